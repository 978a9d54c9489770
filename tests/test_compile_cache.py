"""The persistent compilation cache: a fresh process loads what an earlier one compiled, trains
exactly the same, and counts the loaded program as its one compilation."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import spiral_config
from trainers.compile_cache import cache_directory, cpu_fingerprint, fingerprint

ROOT = Path(__file__).resolve().parent.parent

TRAIN_IN_A_FRESH_PROCESS = """
import json, sys
from jax import monitoring
hits = []
monitoring.register_event_listener(lambda event, **labels: hits.append(event) if event == "/jax/compilation_cache/cache_hits" else None)
from trainers import train, training_loop_compilations
from trainers.compile_cache import cache_directory, enable_compile_cache
enable_compile_cache(cache_directory())
result = train(json.loads(sys.argv[1]))
print(json.dumps({"history": result.history, "cache_hits": len(hits), "loop_compilations": training_loop_compilations()}))
"""


def train_in_a_fresh_process(config: dict, cache_root: Path) -> dict:
    env = {"TILTSWEEP_COMPILE_CACHE": str(cache_root), "JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", TRAIN_IN_A_FRESH_PROCESS, json.dumps(config)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow
def test_a_second_process_loads_the_compiled_programs_and_trains_the_same(tmp_path):
    config = spiral_config(training={"epochs": 300, "eval_every": 100})
    first = train_in_a_fresh_process(config, tmp_path / "cache")
    second = train_in_a_fresh_process(config, tmp_path / "cache")
    assert first["cache_hits"] == 0 and second["cache_hits"] >= 2  # the initialization and the loop
    assert first["loop_compilations"] == second["loop_compilations"] == 1
    assert second["history"] == first["history"]
    assert list((tmp_path / "cache").glob("cpu-*/*-cache"))


CPUINFO = """processor\t: {core}
model name\t: AMD EPYC
cpu MHz\t\t: {mhz}
flags\t\t: fpu sse2 avx2{extra}
"""


def test_one_fingerprint_per_instruction_set_not_per_core_or_clock():
    two_cores = CPUINFO.format(core=0, mhz=2000.1, extra="") + "\n" + CPUINFO.format(core=1, mhz=2999.9, extra="")
    same = fingerprint(CPUINFO.format(core=0, mhz=2450.0, extra=""), "x86_64")
    assert fingerprint(two_cores, "x86_64") == same
    assert fingerprint(CPUINFO.format(core=0, mhz=2450.0, extra=" avx512f"), "x86_64") != same
    assert fingerprint(CPUINFO.format(core=0, mhz=2450.0, extra=""), "aarch64") != same
    assert len(same) == 16


def test_cache_folder_per_cpu_and_switch(tmp_path):
    folder = f"cpu-{cpu_fingerprint()}"
    assert cache_directory({"TILTSWEEP_COMPILE_CACHE": str(tmp_path)}) == tmp_path / folder
    assert cache_directory({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "tiltsweep" / "xla" / folder
    assert cache_directory({"TILTSWEEP_COMPILE_CACHE": "off"}) is None
