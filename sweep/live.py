"""What follows a sweep while it runs: the report (DIR/figures/index.html, redrawn by
analysis.report.write_live_index) and the trackers (sweep.trackers), as points finish.

A Follower calls `act(live)` when summary.parquet/ has changed since its last call (a file
written into it changes the directory's mtime), and at most once every max(MIN_SECONDS, PACE x
the last call's duration): it takes a twentieth of one core at most, so the sweep does not wait
for it. `run` keeps each on a thread of its own (`start` ... `close`, which calls it once more
with live=False); `tiltsweep plot DIR --watch` polls one in the foreground. An act that fails is
said once and not tried again: the sweep goes on.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Optional


class Follower:
    MIN_SECONDS, PACE, POLL_SECONDS = 5.0, 20, 0.5

    def __init__(self, act: Callable[[bool], object], summary_dir: Path, on_problem: Callable[[str], None] = lambda message: None,
                 what: str = "the live report"):
        self.act, self.summary_dir, self.on_problem, self.what = act, Path(summary_dir), on_problem, what
        self.seen: Optional[int] = -1  # the summary directory's mtime (ns) at the last call (-1: none yet)
        self.due = 0.0
        self.broken = False
        self.stopping = threading.Event()
        self.thread: Optional[threading.Thread] = None

    def summary_mtime(self) -> Optional[int]:
        try:
            return self.summary_dir.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def poll(self, live: bool = True, force: bool = False) -> bool:
        """Act if the summary changed and the pace allows (or `force`); True if it acted."""
        if self.broken:
            return False
        mtime = self.summary_mtime()
        if not force and (mtime == self.seen or time.monotonic() < self.due):
            return False
        started = time.monotonic()
        try:
            self.act(live)
        except Exception as error:  # the sweep matters more than what follows it
            self.broken = True
            self.on_problem(f"{self.what} stopped: {type(error).__name__}: {error}")
            return False
        self.seen = mtime
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
