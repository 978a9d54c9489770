"""The processes a test started, remembered by id so that they can all be stopped afterwards."""

from __future__ import annotations

import psutil


class ProcessTree:
    """A process and every descendant it has been seen with. Call remember() while it runs:
    a process whose parent has died (e.g. Ray's, after a SIGKILLed driver) is still known."""

    def __init__(self, pid: int):
        self.pid = pid
        self.known: dict[int, psutil.Process] = {}

    def remember(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            for process in [root, *root.children(recursive=True)]:
                self.known.setdefault(process.pid, process)
        except psutil.NoSuchProcess:
            pass
        return list(self.known.values())

    def kill(self) -> None:
        """SIGKILL every remembered process still running, and wait for them."""
        leftovers = [process for process in self.known.values() if process.is_running()]
        for process in leftovers:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(leftovers, timeout=15)
