"""A head start on the first compilation while Ray starts.

A local Ray takes seconds to start (about 3 s on a 2-core machine, 7.4 s on issue 30's H200
node), and only then does a worker start to compile its first programs (1-2 s for the spiral's
MLP on a CPU core, 5-8 s on a GPU). So before Ray starts, the runner starts one process that:

1. plans the packs as the executor will (run.packs), with the trials that this machine's CPUs
   and accelerators run side by side;
2. builds the programs of the first pack's first block (trainers.build_group_programs) into the
   persistent compilation cache (trainers.compilation.cache), under the claims with which a worker
   that needs one of them waits for it and loads it rather than compiling it again
   (trainers.compilation.share).

It writes nothing in the results directory and runs at low priority (nice 10), so that it never
slows Ray's start. If it fails, or plans another first block than the executor (a resumed sweep
whose first points differ in shape), the workers compile as they would have. The runner stops it
when the sweep ends, if it still runs.

When: `TILTSWEEP_WARMUP` = `on`, `off`, or `auto` (the default: on when the trials ask for a GPU
or TPU, whose compilations are the long ones). Never for a cluster (`--address`: its workers do
not share this machine's cache), with the cache off, or for data on object storage (the copy on
this machine is the workers' to make).

    with warming_up(spec, address):
        ...   # start Ray, run the sweep
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from contextlib import contextmanager
from typing import Optional

from tiltsweep.sweep.grid import GridSpec
from tiltsweep.sweep.run.packs import accelerated

SETTING = "TILTSWEEP_WARMUP"
# Not `python -m`, which puts the working folder first on sys.path: from the repository's root,
# its tiltsweep/ folder (the package's root alone) would hide a plain install of tiltsweep.
CODE = "import sys; del sys.path[0]; from tiltsweep.sweep.run.warmup import main; main()"
STOP_WAIT = 5.0  # seconds for a stopped warm-up to exit before it is killed


def wanted(spec: GridSpec, address: Optional[str], environ=os.environ) -> bool:
    """Whether a sweep of `spec` gets a warm-up (module docstring)."""
    from tiltsweep.sweep.store.files import is_object_uri
    from tiltsweep.trainers.compilation.cache import OFF

    setting = environ.get(SETTING, "auto").strip().lower()
    if setting in OFF or address or not spec.points:
        return False
    if environ.get("TILTSWEEP_COMPILE_CACHE", "").strip().lower() in OFF:
        return False
    if is_object_uri(getattr(spec.points[0].config.data, "path", None) or ""):
        return False
    return setting in ("on", "1", "true", "yes") or accelerated(spec)


@contextmanager
def warming_up(spec: GridSpec, address: Optional[str]):
    """The warm-up process for the duration of the block, where `wanted`."""
    if not wanted(spec, address):
        yield None
        return
    process = subprocess.Popen([sys.executable, "-c", CODE], stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.stdin.write(pickle.dumps(spec))
        process.stdin.close()
    except OSError:  # it died at once: no head start, nothing lost
        pass
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def first_block(spec: GridSpec, devices: int, cpus: int) -> tuple[list, int]:
    """The configs of the first block the executor will train (on a machine with `devices`
    accelerators and `cpus` CPUs), and its block width (run.worker.width_of)."""
    from tiltsweep.sweep.run.packs import plan_packs, trials_at_once
    from tiltsweep.sweep.run.worker import width_of

    slots = trials_at_once(spec, {"CPU": cpus, "GPU": devices, "TPU": devices})
    pack = plan_packs(list(spec.points), slots, spec.resources.retries, accelerated(spec))[0]
    leading = [point for point in pack.points if point.signature == pack.points[0].signature]
    configs = [point.config for point in leading]
    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu, "tpu": spec.resources.tpu}
    width = width_of(configs[0], {"on_accelerator": accelerated(spec), "resources": resources})
    return configs[:width], width


def main() -> None:
    """The warm-up process: a pickled GridSpec on standard input."""
    spec = pickle.loads(sys.stdin.buffer.read())
    os.nice(10)
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # the device's memory is the workers'
    from tiltsweep.sweep.run.worker import configure_accelerator

    configure_accelerator(spec.resources.cpu, spec.resources.gpu, spec.resources.tpu)
    import jax

    from tiltsweep.trainers import build_group_programs
    from tiltsweep.trainers.compilation.cache import cache_directory, enable_compile_cache

    enable_compile_cache(cache_directory())
    devices = len(jax.local_devices()) if accelerated(spec) else 0
    configs, width = first_block(spec, devices, len(os.sched_getaffinity(0)))
    build_group_programs(configs, width if width > 1 else None)


if __name__ == "__main__":
    main()
