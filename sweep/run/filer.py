"""The driver's filer: finished points filed into the tables (store.ledger) on a thread of its own,
off Tune's loop. Tune runs its callbacks on the thread that also starts the next trial, so a worker
would otherwise wait for every filing before its next pack. The workers write each point's record
before reporting it, so filing it a moment later loses nothing. Points that finish while the filer
is busy are filed together: one rewrite of their pack's files.

A filing that meets the store's trouble (errors.storage_trouble) stops the filer: the run stops
too (the executor's trouble_seen), and close() re-raises it. Any other error is reported through
the ledger's on_problem (each different one once) and the filer goes on with the next points:
the records stay the truth, and the run's last sync files what a failed filing left out.

    filer = Filer(ledger, progress.trial_finished)
    filer.file(pack_id, [trial ids])   # returns at once
    filer.close()                      # files what is left; re-raises the store's trouble
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Optional

from tiltsweep.sweep.errors import storage_trouble
from tiltsweep.sweep.run.retries import one_line
from tiltsweep.sweep.store.ledger import Ledger


class Filer:
    """Files finished points on a thread of its own (module docstring)."""

    def __init__(self, ledger: Ledger, on_filed: Callable[[str, str], None]):
        """on_filed(trial_id, status) after each point is filed."""
        self.ledger, self.on_filed = ledger, on_filed
        self.pending: queue.SimpleQueue = queue.SimpleQueue()
        self.error: Optional[BaseException] = None
        self.reported: set[str] = set()
        self.thread = threading.Thread(target=self._run, name="tiltsweep-filer", daemon=True)
        self.thread.start()

    def file(self, pack_id: str, trial_ids: Iterable[str]) -> None:
        self.pending.put((pack_id, list(trial_ids)))

    def close(self) -> None:
        self.pending.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        closing = False
        while not closing:
            batch = [self.pending.get()]
            while not self.pending.empty():  # what finished while the last batch was filed
                batch.append(self.pending.get())
            closing = None in batch
            if self.error is not None:
                continue
            by_pack: dict[str, list[str]] = {}  # one rewrite of a pack's files for all its points
            for pack_id, trial_ids in (item for item in batch if item is not None):
                by_pack.setdefault(pack_id, []).extend(trial_ids)
            try:
                for pack_id, trial_ids in by_pack.items():
                    statuses = self.ledger.file(pack_id, trial_ids)
                    for trial_id, status in statuses.items():  # a point without a readable record: when it has one
                        self.on_filed(trial_id, status)
            except Exception as error:
                if storage_trouble(error):  # kept for close(); the records stay the truth
                    self.error = error
                elif one_line(error) not in self.reported:
                    self.reported.add(one_line(error))
                    self.ledger.on_problem(f"filing finished points into the tables failed ({one_line(error)}); "
                                           "their records are kept, and the run's last sync files them")
            except BaseException as error:  # kept for close()
                self.error = error
