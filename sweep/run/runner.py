"""`tiltsweep run` and `tiltsweep resume`: run every point of a grid that has no final record.

Order of work, so that bad input writes nothing and a killed run loses nothing:
1. the grid file is already validated (sweep.grid), the output path and cluster address are
   checked, and no other run may hold the directory's lock;
2. Ray starts (or joins the cluster), and a trial's resources must fit on one of its nodes; then
   the lock is taken and grid.yaml saved; meanwhile the first programs may compile (run.warmup);
3. the records already there are filed (a run killed earlier may have left some unfiled), and
   the followers start (the live report, the trackers: they act as points finish);
4. once the warm-up has ended, the points without a completed or diverged record run
   (run.retries); partial ones resume from their checkpoints, failed ones are tried again; each is
   filed as it finishes (run.filer);
5. the tables are rebuilt from the records once more.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence, TextIO

from tiltsweep.sweep.errors import Refused
from tiltsweep.sweep.grid import GridSpec
from tiltsweep.sweep.run import retries
from tiltsweep.sweep.run.progress import Progress, clock
from tiltsweep.sweep.run.provenance import code_version
from tiltsweep.sweep.run.signals import Stop, stop_on_signals
from tiltsweep.sweep.run.warmup import WarmUp, warming_up
from tiltsweep.sweep.store import ResultsDir
from tiltsweep.sweep.store.ledger import Ledger
from tiltsweep.sweep.store.location import Unplaceable, results_directory
from tiltsweep.sweep.store.lock import LockHeld, describe


class RunRefused(Refused):
    """The run cannot start: the message says why. Nothing was written."""


@dataclass
class RunOutcome:
    results: ResultsDir
    total: int
    ran: int
    counts: dict[str, int]
    seconds: float
    ray_startup_seconds: float = 0.0
    ray_shutdown_seconds: float = 0.0

    @property
    def all_final(self) -> bool:
        return self.counts.get("completed", 0) + self.counts.get("diverged", 0) == self.total


def results_dir_for(spec: GridSpec, out) -> ResultsDir:
    """The results directory of `spec` under `out` (--out), or RunRefused where it cannot be
    (store.location). Writes nothing."""
    try:
        return results_directory(out, spec.name, spec.source)
    except Unplaceable as error:
        raise RunRefused(str(error)) from None


def refuse_if_locked(results: ResultsDir) -> None:
    owner = results.lock().holder()
    if owner is not None:
        raise RunRefused(f"{results} is in use by another tiltsweep run: {describe(owner)}")


class Following(Protocol):
    """What follows a run as its points finish (the live report, the trackers): started once the
    records already there are filed, closed at the end."""

    def start(self) -> object: ...

    def close(self) -> None: ...


def run_sweep(
    spec: GridSpec, results: ResultsDir, address: Optional[str] = None, verbose: bool = False,
    dashboard: bool = False, stream: Optional[TextIO] = None, followers: Sequence[Following] = (),
) -> RunOutcome:
    from tiltsweep.sweep.run import executor  # Ray loads only for runs

    if address:
        executor.probe_address(address)
    else:
        executor.refuse_open_local_ray()
    refuse_if_locked(results)
    use_the_system_allocator_for_tables()
    started = time.perf_counter()
    stop = Stop()
    try:
        with warming_up(spec, address, results) as warm_up, executor.ray_session(address, verbose, dashboard) as ray_seconds, \
                stop_on_signals(stop):
            ledger, todo = run_locked(spec, results, address, verbose, executor, ray_seconds, stream or sys.stdout, followers, warm_up)
    except KeyboardInterrupt:
        if stop.signum is None:
            raise
        recorded = results.records.outcomes(on_corrupt=lambda error: None)
        finished = sum(1 for point in spec.points if point.trial_id in recorded and recorded[point.trial_id].final)
        raise SweepStopped(stop, f"stopped by {stop.name}: {finished}/{len(spec.points)} points finished, the others keep "
                                 f"their latest checkpoint; `tiltsweep resume {results}` goes on") from None
    counts = {status: 0 for status in ("completed", "diverged", "failed")}
    for point in spec.points:
        status = ledger.status_of(point.trial_id)
        if status:
            counts[status] += 1
    seconds = time.perf_counter() - started
    return RunOutcome(results, len(spec.points), len(todo), counts, seconds, ray_seconds.startup, ray_seconds.shutdown)


def use_the_system_allocator_for_tables() -> None:
    """The driver rewrites its tables all sweep long, on several threads, and Arrow's default
    allocator (mimalloc) keeps what each thread freed: after 1,000 points of 400 evaluations,
    180 MiB more of the driver's memory than with the system's allocator, which gives it back
    (benchmarks/scale.py)."""
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


class SweepStopped(Exception):
    """A signal stopped the sweep; the message says how far it got and how to go on."""

    def __init__(self, stop: Stop, message: str):
        super().__init__(message)
        self.exit_code = stop.exit_code


def run_locked(spec: GridSpec, results: ResultsDir, address: Optional[str], verbose: bool, executor, ray_seconds, stream: TextIO,
               followers: Sequence[Following] = (), warm_up: Optional[WarmUp] = None):
    """Steps 2-5 above, Ray being up: returns the ledger and the points that were to run. The
    `warm_up` (run.warmup) ends before the first trial starts."""
    say = lambda message: print(message, file=stream, flush=True)
    executor.refuse_unmeetable_resources(spec, address)
    lock = results.lock()
    try:
        lock.acquire(on_wait=say)
    except LockHeld as error:
        raise RunRefused(str(error)) from None
    following: list[Following] = []
    try:
        results.save_grid(spec.text, spec.source, spec.description(), spec.base_dir)
        ledger = Ledger(results, spec.columns, on_problem=lambda message: say(f"warning: {message}"))
        ledger.sync()
        for follower in followers:
            follower.start()
            following.append(follower)
        todo = retries.to_run(spec.points, ledger.status_of)
        done = len(spec.points) - len(todo)
        where = f"the Ray cluster at {address}" if address else "local Ray"
        say(f"{spec.name}: {len(spec.points)} points, {done} already done, {len(todo)} to run on {where} "
            f"(Ray ready in {ray_seconds.startup:.1f} s) -> {results}")
        if todo:
            if warm_up is not None:
                warm_up.finish()
            progress = Progress(spec.name, len(spec.points), done, stream)
            executor.run_points(spec, results, todo, ledger, progress, code_version(), verbose, lock)
            progress.close()
        ledger.sync()
    finally:
        for follower in following:
            follower.close()
        lock.release()
    return ledger, todo


def format_outcome(outcome: RunOutcome) -> str:
    c = outcome.counts
    missing = outcome.total - sum(c.values())
    text = (f"{outcome.results}: {c['completed']}/{outcome.total} completed, {c['diverged']} diverged, "
            f"{c['failed']} failed" + (f", {missing} not finished" if missing else "")
            + f" ({outcome.ran} run now, {clock(outcome.seconds)})")
    return text
