"""What follows a sweep while it runs: the live report (DIR/figures/index.html, redrawn by
analysis.report.write_live_index) and the trackers (commands.trackers), as points finish.

A Follower calls `act(live)` when the summary has changed since its last call (the store's
`summary_changed` token) and at most once every max(MIN_SECONDS, PACE x the last call's
duration): it takes a twentieth of one core at most, so the sweep does not wait for it. A run keeps
each on a thread of its own (`start` ... `close`, which calls it once more with live=False);
`tiltsweep plot DIR --watch` polls one in the foreground. An act that fails is said once and not
tried again: the sweep goes on.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from tiltsweep.sweep.store import ResultsDir


class Follower:
    MIN_SECONDS, PACE, POLL_SECONDS = 5.0, 20, 0.5

    def __init__(self, act: Callable[[bool], object], results: ResultsDir, on_problem: Callable[[str], None] = lambda message: None,
                 what: str = "the live report"):
        self.act, self.results, self.on_problem, self.what = act, results, on_problem, what
        self.seen: object = -1  # the summary's token at the last call (-1: none yet)
        self.due = 0.0
        self.broken = False
        self.stopping = threading.Event()
        self.thread: Optional[threading.Thread] = None

    def poll(self, live: bool = True, force: bool = False) -> bool:
        """Act if the summary changed and the pace allows (or `force`); True if it acted."""
        if self.broken:
            return False
        token = self.results.tables.summary_changed()
        if not force and (token == self.seen or time.monotonic() < self.due):
            return False
        started = time.monotonic()
        try:
            self.act(live)
        except Exception as error:  # the sweep matters more than what follows it
            self.broken = True
            self.on_problem(f"{self.what} stopped: {type(error).__name__}: {error}")
            return False
        self.seen = token
        self.due = time.monotonic() + max(self.MIN_SECONDS, self.PACE * (time.monotonic() - started))
        return True

    def start(self) -> "Follower":
        """Act at once, then as points finish, on a thread (the first act too: the sweep does not
        wait for the report's imports and first page)."""
        self.thread = threading.Thread(target=self._run, name="tiltsweep-follower", daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        self.poll(force=True)
        while not self.stopping.wait(self.POLL_SECONDS):
            self.poll()

    def close(self) -> None:
        """Stop the thread and act once more, no longer live (a page that does not reload itself)."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()
        self.poll(live=False, force=True)
