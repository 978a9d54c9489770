"""Stopping a sweep by a signal: SIGINT (Ctrl-C) and SIGTERM (what SLURM, Kubernetes and
`docker stop` send).

    stop = Stop()
    with stop_on_signals(stop):   # after Ray started, which puts its own SIGTERM handler in
        ...                       # the first signal raises Interrupted in the main thread

The first signal raises Interrupted where the driver is; the sweep's own cleanup then runs (the
filer files what it has, Ray shuts down and its workers with it; in-flight points keep their
latest checkpoint, and every file is whole, being written aside and renamed). A second signal
during that cleanup ends the process at once. The exit code is 128 + the signal's number: 130
for SIGINT, 143 for SIGTERM.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from typing import Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Raised by the first signal. Code on the way out may catch it and raise a KeyboardInterrupt
    of its own, so what was received is kept on the Stop too."""


class Stop:
    """The signal that stopped the sweep, if one did."""

    signum: Optional[int] = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextmanager
def stop_on_signals(stop: Stop):
    """Sets stop.signum at the first SIGINT or SIGTERM (and raises Interrupted)."""

    def on_signal(signum, frame):
        if stop.signum is not None:  # a second one: no more cleanup
            os._exit(128 + signum)
        stop.signum = signum
        raise Interrupted(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, on_signal) for signum in SIGNALS}
    try:
        yield
    finally:
        if stop.signum is None:  # after a signal, a second one still ends the process at once
            for signum, handler in previous.items():
                signal.signal(signum, handler)
