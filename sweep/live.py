"""The report while a sweep runs: DIR/figures/index.html rewritten as points finish.

`write(live)` draws the page (analysis.report.write_live_index: the interactive report alone,
reloading itself while `live`). A LiveReport calls it when summary.parquet has changed since the
last page, and at most once every max(MIN_SECONDS, PACE x the last page's duration): the pages
take a tenth of one core at most, so the sweep does not wait for them. `run` keeps one on a
thread of its own (`start` ... `close`); `tiltsweep plot DIR --watch` polls in the foreground.
A page that cannot be drawn is said once and no more are tried: the sweep goes on.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Optional


class LiveReport:
    MIN_SECONDS, PACE, POLL_SECONDS = 2.0, 10, 0.5

    def __init__(self, write: Callable[[bool], object], summary_path: Path, on_problem: Callable[[str], None] = lambda message: None):
        self.write, self.summary_path, self.on_problem = write, Path(summary_path), on_problem
        self.seen: Optional[float] = -1.0  # the summary's mtime at the last page (-1: no page yet)
        self.due = 0.0
        self.broken = False
        self.stopping = threading.Event()
        self.thread: Optional[threading.Thread] = None

    def summary_mtime(self) -> Optional[float]:
        try:
            return self.summary_path.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def poll(self, live: bool = True, force: bool = False) -> bool:
        """Draw the page if the summary changed and the pace allows (or `force`); True if drawn."""
        if self.broken:
            return False
        mtime = self.summary_mtime()
        if not force and (mtime == self.seen or time.monotonic() < self.due):
            return False
        started = time.monotonic()
        try:
            self.write(live)
        except Exception as error:  # the sweep matters more than its page
            self.broken = True
            self.on_problem(f"the live report stopped: {type(error).__name__}: {error}")
            return False
        self.seen = mtime
        self.due = time.monotonic() + max(self.MIN_SECONDS, self.PACE * (time.monotonic() - started))
        return True

    def start(self) -> "LiveReport":
        """The first page at once, then a page as points finish, on a thread."""
        self.poll(force=True)
        self.thread = threading.Thread(target=self._run, name="tiltsweep-live-report", daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stopping.wait(self.POLL_SECONDS):
            self.poll()

    def close(self) -> None:
        """Stop the thread and leave a page that no longer reloads itself."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()
        self.poll(live=False, force=True)
