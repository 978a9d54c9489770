"""One `tiltsweep run` per results directory at a time.

The lock is the file <results>/.lock, created with O_EXCL and holding the owner's host, pid,
process start time and command. A second run refuses with a message naming the owner. A lock
whose owner is gone (same host, and no process with that pid and start time) is stale: it is
moved aside and taken over.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import psutil

from tiltsweep.sweep.errors import Refused


class LockHeld(Refused):
    pass


def process_start_time(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return -1.0


def owner_alive(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # cannot tell from here: assume it is alive
    started = process_start_time(int(owner.get("pid", -1)))
    return started >= 0 and abs(started - float(owner.get("started", -2))) < 1.0


def describe(owner: dict) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(owner.get("locked_at", 0))))
    return f"pid {owner.get('pid')} on {owner.get('host')} since {since} ({owner.get('command', '?')})"


class RunLock:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.held = False

    def acquire(self) -> None:
        me = {
            "host": socket.gethostname(), "pid": os.getpid(), "started": process_start_time(os.getpid()),
            "locked_at": time.time(), "command": " ".join(sys.argv),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                owner = self.owner()
                if owner is None:
                    continue  # released meanwhile: try again
                if owner and owner_alive(owner):
                    raise LockHeld(f"{self.path.parent} is in use by another tiltsweep run: {describe(owner)}") from None
                try:
                    self.path.replace(self.path.with_name(f".lock.stale-{int(time.time())}"))
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(descriptor, "w") as handle:
                json.dump(me, handle)
            self.held = True
            return
        raise LockHeld(f"{self.path.parent}: could not take the lock")

    def owner(self):
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return {}  # half-written by a process that died mid-write: stale

    def release(self) -> None:
        if self.held:
            try:
                self.path.unlink(missing_ok=True)
            except OSError:  # a directory turned read-only: the lock left behind is a dead run's, taken over next time
                pass
            self.held = False
