"""One tidy progress line for a running sweep, instead of Ray's trial table:

    quickstart: 12/48 done · 2 running · 1 failed · 0 diverged · 0:41 elapsed · ~1:55 left

On a terminal the line is redrawn in place. Otherwise (a log file) a line is printed when a
point fails or is retried, for the last point, and else at most every 5% of the points or every
30 seconds, so that a 1000-point sweep writes tens of lines, not a thousand. While no trial can
start for want of resources (a busy cluster), the line says what they wait for.
Time left = (time per point finished in this run) x (points left), shown once a point has
finished in this run. Thread-safe: starts are reported from Tune's loop, finishes from the filer.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Optional, TextIO


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    def __init__(self, name: str, total: int, already_done: int, stream: Optional[TextIO] = None, now=time.monotonic):
        self.name, self.total = name, total
        self.done = already_done
        self.done_at_start = already_done
        self.running: set[str] = set()
        self.failed = self.diverged = self.retries = 0
        self.stream = stream or sys.stdout
        self.now = now
        self.started = now()
        self.interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last_drawn = 0.0
        self.last_logged = (already_done, self.started)
        self.waiting: Optional[str] = None  # what the trials wait for, while none can start
        self.lock = threading.Lock()

    def line(self) -> str:
        elapsed = self.now() - self.started
        parts = [f"{self.name}: {self.done}/{self.total} done", f"{len(self.running)} running"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.diverged:
            parts.append(f"{self.diverged} diverged")
        if self.retries:
            parts.append(f"{self.retries} retried")
        if self.waiting:
            parts.append(f"waiting for resources: {self.waiting}")
        parts.append(f"{clock(elapsed)} elapsed")
        finished_here = self.done - self.done_at_start
        if finished_here and self.done < self.total:
            parts.append(f"~{clock(elapsed / finished_here * (self.total - self.done))} left")
        return " · ".join(parts)

    def draw(self, finished: bool = False, notable: bool = False) -> None:
        if self.interactive:
            if finished or self.now() - self.last_drawn > 0.5:
                self.stream.write("\r" + self.line() + "\x1b[K")
                self.stream.flush()
                self.last_drawn = self.now()
        elif finished and (notable or self.done == self.total or self.due()):
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            self.last_logged = (self.done, self.now())

    def due(self) -> bool:
        done, when = self.last_logged
        return self.done - done >= max(1, self.total // 20) or self.now() - when >= 30

    def trial_started(self, trial_id: str) -> None:
        with self.lock:
            self.running.add(trial_id)
            self.draw()

    def trial_retried(self, trial_id: str) -> None:
        with self.lock:
            self.retries += 1
            self.draw(finished=True, notable=True)

    def wait_for(self, what: Optional[str]) -> None:
        """Say what the trials wait for (None: they run). A change is always printed."""
        with self.lock:
            if what != self.waiting:
                self.waiting = what
                self.draw(finished=True, notable=True)

    def trial_finished(self, trial_id: str, status: str) -> None:
        with self.lock:
            self.running.discard(trial_id)
            self.done += 1
            self.failed += status == "failed"
            self.diverged += status == "diverged"
            self.draw(finished=True, notable=status == "failed")

    def close(self) -> None:
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()
