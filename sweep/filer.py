"""Filing finished trials on a thread of its own, off Tune's loop.

Tune runs its callbacks on the thread that also starts the next trial, so a worker would wait
for every filing (a curve file and a summary.parquet rewrite, ~16 ms) before its next point.
The workers write each point's record before its trial ends, so filing it a moment later loses
nothing. Trials that finish while the filer is busy are filed together, with one summary
rewrite for the batch.

    filer = Filer(ledger, progress)
    filer.file(["<trial id>", ...])   # returns at once
    filer.close()                     # files what is left; re-raises the first filing error
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Optional

from tiltsweep.sweep.ledger import Ledger
from tiltsweep.sweep.progress import Progress

CLOSE = None


class Filer:
    def __init__(self, ledger: Ledger, progress: Progress):
        self.ledger, self.progress = ledger, progress
        self.pending: queue.SimpleQueue = queue.SimpleQueue()
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, name="tiltsweep-filer", daemon=True)
        self.thread.start()

    def file(self, trial_ids: Iterable[str]) -> None:
        self.pending.put(list(trial_ids))

    def close(self) -> None:
        self.pending.put(CLOSE)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        closing = False
        while not closing:
            batch = [self.pending.get()]
            while not self.pending.empty():  # what finished while the last batch was filed
                batch.append(self.pending.get())
            closing = CLOSE in batch
            trial_ids = [trial_id for item in batch if item is not CLOSE for trial_id in item]
            if trial_ids and self.error is None:
                try:
                    self._file(trial_ids)
                except BaseException as error:  # kept for close(); the records stay the truth
                    self.error = error

    def _file(self, trial_ids: list[str]) -> None:
        for trial_id in trial_ids:
            record = self.ledger.file(trial_id)
            self.progress.trial_finished(trial_id, record["status"] if record else "failed")
        self.ledger.write_summary()
