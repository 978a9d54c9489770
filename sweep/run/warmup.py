"""A head start on the first compilation while Ray starts.

A local Ray takes seconds to start (about 3 s on a 2-core machine, 7.4 s on issue 30's H200
node), and only then does a worker start to compile its first programs (1-2 s for the spiral's
MLP on a CPU core, 5-8 s on a GPU). So before Ray starts, the runner starts one process that:

1. plans the packs as the executor will (run.packs), with the trials that this machine's CPUs
   and GPUs run side by side;
2. builds the programs of the first pack's first block (trainers.build_group_programs) into the
   persistent compilation cache (trainers.compilation.cache), under the claims with which a worker
   that needs one of them waits for it and loads it rather than compiling it again
   (trainers.compilation.share).

It compiles without running what it compiles, writes nothing in the results directory, and runs
at low priority (nice 10), so that Ray's start has the CPUs first. Before the first trial starts,
the runner waits for it to end (at most trainers.compilation.share's WAIT_LIMIT, as a worker
would, then stops it): no worker shares the device, or its memory, with it. If it fails, or plans
another first block than the executor, the workers compile as they would have.

When: `TILTSWEEP_WARMUP` = `on`, `off`, or `auto` (the default: on when the trials ask for a GPU,
whose compilations are the long ones). Never for TPU trials (a TPU host lets one process at a
time use its chips), for a cluster (`--address`: its workers do not share this machine's cache),
with the cache off, for data on object storage (the copy on this machine is the workers' to make),
or for a results directory that exists already (a resumed sweep's first block is another).

    with warming_up(spec, address, results) as warm_up:
        ...            # start Ray
        warm_up.finish()
        ...            # run the trials
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from tiltsweep.sweep.grid import GridSpec
from tiltsweep.sweep.run.packs import accelerated, trial_share
from tiltsweep.trainers.compilation.share import WAIT_LIMIT

SETTING = "TILTSWEEP_WARMUP"
# Not `python -m`, which puts the working folder first on sys.path: from the repository's root,
# its tiltsweep/ folder (the package's root alone) would hide a plain install of tiltsweep.
CODE = "import os, sys; os.nice(10); sys.path[0] == '' and sys.path.pop(0); from tiltsweep.sweep.run.warmup import main; main()"
STOP_WAIT = 5.0  # seconds for a stopped warm-up to exit before it is killed


def wanted(spec: GridSpec, address: Optional[str], results=None, environ=os.environ) -> bool:
    """Whether a sweep of `spec` into `results` (a ResultsDir) gets a warm-up (module docstring)."""
    from tiltsweep.sweep.store.files import is_object_uri
    from tiltsweep.trainers.compilation.cache import OFF, cache_directory

    setting = environ.get(SETTING, "auto").strip().lower()
    if setting in OFF or address or not spec.points or spec.resources.tpu > 0:
        return False
    if cache_directory(environ) is None:
        return False
    if is_object_uri(getattr(spec.points[0].config.data, "path", None) or ""):
        return False
    if results is not None and results.exists():
        return False
    return setting in ("on", "1", "true", "yes") or spec.resources.gpu > 0


class WarmUp:
    """The warm-up process of `spec`, started at once (None: no warm-up; `process` is None where
    there is none, or it could not start). The spec goes to it in a file of its own, which it
    deletes once read: a pipe would hold the driver until the process reads it."""

    def __init__(self, spec: Optional[GridSpec]):
        self.process: Optional[subprocess.Popen] = None
        self.sent: Optional[Path] = None
        if spec is None:
            return
        try:
            handle, sent = tempfile.mkstemp(prefix="tiltsweep-warmup-", suffix=".pickle")
            self.sent = Path(sent)
            with os.fdopen(handle, "wb") as out:
                pickle.dump(spec, out)
            self.process = subprocess.Popen([sys.executable, "-c", CODE, sent], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
        except Exception:  # noqa: BLE001 - whatever keeps it from starting costs the head start, nothing else
            self.process = None

    def finish(self, limit: float = WAIT_LIMIT) -> None:
        """Let it end, for at most `limit` seconds, then stop it (and delete the spec's file, if
        it was stopped before it read it)."""
        if self.process is not None:
            try:
                self.process.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                self.process.terminate()
                try:
                    self.process.wait(timeout=STOP_WAIT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        if self.sent is not None:
            self.sent.unlink(missing_ok=True)


@contextmanager
def warming_up(spec: GridSpec, address: Optional[str], results=None):
    """A WarmUp where `wanted` (else one that does nothing), stopped at once when the block
    ends before its `finish`."""
    warm_up = WarmUp(spec if wanted(spec, address, results) else None)
    try:
        yield warm_up
    finally:
        warm_up.finish(limit=0)


def first_block(spec: GridSpec, devices: int, cpus: int) -> tuple[list, int]:
    """The configs of the first block the executor will train (on a machine with `devices`
    accelerators and `cpus` CPUs), and its block width (run.worker.width_of)."""
    from tiltsweep.sweep.run.packs import plan_packs, trials_at_once
    from tiltsweep.sweep.run.worker import width_of

    slots = trials_at_once(spec, {"CPU": cpus, "GPU": devices})
    pack = plan_packs(list(spec.points), slots, spec.resources.retries, accelerated(spec))[0]
    leading = [point for point in pack.points if point.signature == pack.points[0].signature]
    configs = [point.config for point in leading]
    width = width_of(configs[0], accelerated(spec))
    return configs[:width], width


def main() -> None:
    """The warm-up process: `python -c CODE FILE`, FILE a pickled GridSpec, deleted once read."""
    sent = Path(sys.argv[1])
    spec = pickle.loads(sent.read_bytes())
    sent.unlink()
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # allocate what the programs use, no more
    from tiltsweep.sweep.run.worker import configure_accelerator

    configure_accelerator(**trial_share(spec))
    import jax

    from tiltsweep.trainers import build_group_programs
    from tiltsweep.trainers.compilation.cache import cache_directory, enable_compile_cache

    if accelerated(spec) and jax.default_backend() == "cpu":
        return  # no GPU here: the run will say so, and there is nothing to compile for it
    enable_compile_cache(cache_directory())
    devices = len(jax.local_devices()) if accelerated(spec) else 0
    # Ray counts CPUs so too, unless a cgroup's quota says fewer: then the plan may differ (rarely
    # on a GPU trial, whose GPUs bind first), and the workers compile their own
    configs, width = first_block(spec, devices, os.cpu_count() or 1)
    build_group_programs(configs, width if width > 1 else None)


if __name__ == "__main__":
    main()
