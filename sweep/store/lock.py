"""One `tiltsweep run` per results directory at a time.

The lock is an OS file lock (filelock) on <results>/.lock, held for the run's whole life: the
operating system frees it when the process ends, however it ends, so a killed run's lock is
taken over by the next one and never has to be judged stale. Who holds it (host, pid, command,
since when) is written beside it, in .lock.owner, so that a second run is refused naming the
holder.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Optional

from filelock import FileLock, Timeout

from tiltsweep.sweep.errors import Refused
from tiltsweep.sweep.store.files import atomic_write


class LockHeld(Refused):
    pass


def describe(owner: dict) -> str:
    if not owner:
        return "its owner did not say who it is"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(owner.get("locked_at", 0))))
    return f"pid {owner.get('pid')} on {owner.get('host')} since {since} ({owner.get('command', '?')})"


class RunLock:
    def __init__(self, path: Path, owner_path: Path):
        self.path, self.owner_path = Path(path), Path(owner_path)
        self.lock: Optional[FileLock] = None

    def acquire(self, timeout: float = 1.0) -> None:
        """Take the lock, waiting up to `timeout` seconds (another process may be probing it:
        `holder`); LockHeld naming the holder if another run has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.path)
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise LockHeld(f"{self.path.parent} is in use by another tiltsweep run: {describe(self.owner())}") from None
        me = {"host": socket.gethostname(), "pid": os.getpid(), "locked_at": time.time(), "command": " ".join(sys.argv)}
        try:
            atomic_write(self.owner_path, json.dumps(me).encode())
        except BaseException:
            lock.release()
            raise
        self.lock = lock

    def release(self) -> None:
        if self.lock is None:
            return
        try:
            self.owner_path.unlink(missing_ok=True)
        except OSError:  # a directory turned read-only: the next run overwrites it
            pass
        self.lock.release()
        self.lock = None

    def owner(self) -> dict:
        try:
            return json.loads(self.owner_path.read_text())
        except (OSError, ValueError):
            return {}

    def holder(self) -> Optional[dict]:
        """The owner of the lock if another process holds it now, else None. Where the lock cannot
        be tried (a directory this user may not write), who last wrote that they hold it."""
        if not self.path.exists():
            return None
        probe = FileLock(self.path)
        try:
            probe.acquire(timeout=0)
        except Timeout:
            return self.owner()
        except OSError:
            return self.owner() if self.owner_path.exists() else None
        probe.release()
        return None
