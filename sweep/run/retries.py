"""A crashed point's story: how it is retried, where its attempts are counted, when it is recorded
failed. Each step is told here, and what each decides is a function here, called where the step
happens (the worker, the executor, the runner).

1. Before a block of points trains, its worker counts their starts in their pack's record file
   (`count_starts`: attempts, and which worker started each last).
2. A training that raises an error that depends only on the point's inputs (`PERMANENT_ERRORS`:
   an invalid config, unreadable data) fails the same way every time: the point is recorded
   `failed` at once and not retried. Any other error records `failed` the block's points that
   have no final record (`failed_record`, with the error), the pack's other blocks still train,
   and then the worker raises it.
3. A worker that raised, or died (killed, out of memory, exited), fails its Ray Tune trial, and
   Tune retries the trial, a whole pack, `resources.retries` times (run.executor's FailureConfig;
   with `retries: 0` a pack is one block, run.packs, so that no unstarted point waits on it).
4. A retried pack skips its points that have a final record and trains the others, those never
   started first (`training_order`), so that a point that kills its worker cannot use up its
   pack-mates' retries; each resumes from its newest checkpoint that verifies.
5. After the last retry, the driver records `failed` every point of the pack that started and has
   no record (its worker died on every attempt), or, when no point of the pack ever started,
   every point with the reason the trial failed before training (`record_unfinished`).
6. The next run (`run` again, or `resume`) trains again every point without a completed or
   diverged record (`to_run`), failed ones included, in new packs, from their checkpoints; a
   newer record counts over the failed one (store.records: precedence). A diverged point is final.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

from tiltsweep.sweep.store import FINAL_STATUSES, PackRecords, TrialRecord

WORKER_DIED = "the worker training it died (it exited, was killed or ran out of memory) on every attempt"


def permanent_errors() -> tuple:
    """Errors that depend only on a point's inputs (its config, its data)."""
    from pydantic import ValidationError

    from tiltsweep.trainers.data import DatasetError

    return (ValidationError, DatasetError)


PERMANENT_ERRORS = permanent_errors()


def one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"[:500]


def count_starts(book: PackRecords, trial_ids: Iterable[str], worker: str) -> None:
    """Step 1: one more start of each point, by `worker` (host:pid); the caller writes the book."""
    for trial_id in trial_ids:
        book.attempts[trial_id] = book.attempts.get(trial_id, 0) + 1
        book.workers[trial_id] = worker


def training_order(trial_ids: Iterable[str], book: PackRecords) -> list[str]:
    """Step 4: the points without a final record, those never started first (order kept)."""
    left = [t for t in trial_ids if not (t in book.records and book.records[t].final)]
    return sorted(left, key=lambda t: book.attempts.get(t, 0) > 0)


def failed_record(trial_id: str, config: dict, book: PackRecords, error: str, code_version: str, **more) -> TrialRecord:
    """A `failed` record of a point of `book`'s pack, counting its attempts there."""
    return TrialRecord.written_now(trial_id, "failed", config, book.attempts.get(trial_id, 0), code_version, error=error, **more)


def record_unfinished(book: PackRecords, points: list, filed: set[str], before_training: Callable[[], str],
                      traceback: Callable[[], str], code_version: str) -> tuple[list, bool]:
    """Step 5, after a pack's last retry: (the points to file now, whether `book` gained records
    and must be written). points: the pack's GridPoints; filed: the trial ids filed already;
    before_training(): the reason its trial failed, when none of its points ever started."""
    started = [p for p in points if p.trial_id in book.attempts and p.trial_id not in filed]
    reason = WORKER_DIED
    if not book.attempts:  # nothing of the pack ever started
        started, reason = [p for p in points if p.trial_id not in filed], f"before training: {before_training()}"
    unrecorded = [p for p in started if p.trial_id not in book.records]
    if unrecorded:
        trace = traceback()
        for point in unrecorded:
            book.records[point.trial_id] = failed_record(point.trial_id, point.config.model_dump(mode="json"), book, reason,
                                                         code_version, traceback=trace)
    return started, bool(unrecorded)


def to_run(points: Iterable, status_of: Callable[[str], Optional[str]]) -> list:
    """Step 6: the points (GridPoints) a run trains: those without a completed or diverged record."""
    return [point for point in points if status_of(point.trial_id) not in FINAL_STATUSES]
