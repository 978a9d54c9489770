"""Train one grid point in a fresh Python process with the persistent compilation cache on, and
tell how each program of the process was built: compiled, or loaded from the cache."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent

TRAIN = """
import json, os, sys, time
from jax import monitoring
from tiltsweep.trainers.compilation.counts import BACKEND_COMPILE_EVENT
loaded, programs = [False], []
monitoring.register_event_listener(lambda event, **labels: loaded.__setitem__(0, True) if event == "/jax/compilation_cache/cache_hits" else None)
def note(event, seconds, **labels):  # a cache hit comes just before its program's build event
    if event == BACKEND_COMPILE_EVENT:
        programs.append([labels.get("fun_name"), "loaded" if loaded[0] else "compiled"])
        loaded[0] = False
monitoring.register_event_duration_secs_listener(note)
from tiltsweep.trainers import train, training_loop_compilations
from tiltsweep.trainers.compilation.cache import cache_directory, enable_compile_cache
enable_compile_cache(cache_directory())
if len(sys.argv) > 2:  # wait for the word: `go` appears
    open(sys.argv[2] + ".ready." + str(os.getpid()), "w").close()
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.005)
result = train(json.loads(sys.argv[1]))
print(json.dumps({"history": result.history, "programs": programs, "loop_compilations": training_loop_compilations()}))
"""

SHARED_PROGRAMS = ("jit(_init_state)", "jit(_train_then_evaluate)")  # the initialization and the loop


def start_training(config: dict, cache_root: Path, go: Optional[Path] = None, xla_flags: Optional[str] = None) -> subprocess.Popen:
    """A process that trains `config` under `xla_flags` (default: this process's XLA_FLAGS, so a
    suite run with a restricted instruction set runs these with it too); with `go`, it imports
    everything, writes `go.ready.<pid>` and waits for `go` to exist before it trains."""
    env = {"TILTSWEEP_COMPILE_CACHE": str(cache_root), "JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin",
           "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") if xla_flags is None else xla_flags}
    return subprocess.Popen([sys.executable, "-c", TRAIN, json.dumps(config), *([str(go)] if go else [])], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def outcome(process: subprocess.Popen) -> dict:
    """{"history", "programs": [[name, "compiled" | "loaded"]], "loop_compilations"} of a finished run."""
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return json.loads(out.splitlines()[-1])


def how_built(run: dict) -> dict[str, str]:
    """How the initialization and the loop were built in a run: {name: "compiled" | "loaded"}."""
    return {name: how for name, how in run["programs"] if name in SHARED_PROGRAMS}
