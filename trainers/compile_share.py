"""Workers on one machine split the compiling of a shape's programs instead of each compiling all.

A worker about to train a new shape needs several programs (the initialization, the training
loop). With the persistent compilation cache on (trainers.compile_cache), it builds them in turn
and claims each before compiling it: a file in `<cache>/claims/`, created only if absent, naming
this host and process. A program that another live process on this host has claimed is left for
later; once the worker has built the others, it waits for that one to be done and then loads it
from the cache. So two workers that start one shape together compile one program each, and
load the other's, instead of both compiling both (on a 2-core machine, ~0.7 s less per worker
for the spiral MLP: benchmarks/README.md).

What can go wrong costs time, never a wrong program (the cache itself keys programs by their
contents):
- A claim whose process died (killed mid-compile), or one of this process, is taken over.
- A claim from another host (a cache folder shared over a network file system) is not waited
  for: its owner's liveness cannot be checked, so the worker compiles the program itself.
- A worker waits at most `wait_limit` seconds, then compiles the program itself.
- A `.done` marker whose program the cache has since dropped means one more compilation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

WAIT_LIMIT = 120.0
POLL_SECONDS = 0.02

CLAIMED, READY, WAITED, ALONE, BUILT = "claimed", "ready", "waited", "alone", "built"
_built_here: set[str] = set()


class Claims:
    """The claim and done files of programs, in one folder. A program is named by a key that
    every process derives the same way from what determines the program."""

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.me = {"host": socket.gethostname(), "pid": os.getpid()}

    def path(self, key: str, suffix: str) -> Path:
        return self.directory / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.{suffix}"

    def is_done(self, key: str) -> bool:
        return self.path(key, "done").exists()

    def owner(self, key: str) -> Optional[dict]:
        """Who holds the claim on `key` ({"host", "pid"}), or None if nobody does."""
        try:
            return json.loads(self.path(key, "claim").read_text())
        except (OSError, ValueError):
            return None

    def live_elsewhere(self, owner: Optional[dict]) -> bool:
        """`owner` is another live process on this host."""
        return bool(owner) and owner.get("host") == self.me["host"] and owner.get("pid") != self.me["pid"] and alive(owner.get("pid"))

    def held_elsewhere(self, key: str) -> bool:
        """Another live process on this host is building `key`."""
        return self.live_elsewhere(self.owner(key))

    def try_claim(self, key: str) -> bool:
        """Claim `key` if nobody live holds it (a dead owner's claim is taken over; another
        host's is left alone)."""
        path = self.path(key, "claim")
        owner = self.owner(key)
        if owner is None or (owner.get("host") == self.me["host"] and not self.live_elsewhere(owner)):
            path.unlink(missing_ok=True)  # stale; two takers at once both compile, which is harmless
        # Written aside, then linked into place: a claim never appears half-written, and
        # linking fails if another process claimed first (also on network file systems).
        draft = self.directory / f".{path.name}.{self.me['host']}.{self.me['pid']}"
        try:
            draft.write_text(json.dumps(self.me))
            os.link(draft, path)
        except OSError:  # claimed first, or a folder that takes no hard links: compile unshared
            return False
        finally:
            draft.unlink(missing_ok=True)
        return True

    def finish(self, key: str, built: bool) -> None:
        """Release a claim; a built program is marked done."""
        with contextlib.suppress(OSError):
            if built:
                self.path(key, "done").touch()
            self.path(key, "claim").unlink(missing_ok=True)


def alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


def build_in_turn(
    programs: Sequence[tuple[str, Callable[[], object]]],
    cache_dir: Optional[str],
    wait_limit: float = WAIT_LIMIT,
) -> dict[str, str]:
    """Call every builder of `programs` ([(key, builder)], each builder compiling its program or
    loading it from the cache), sharing the compiling with the other processes of this host.
    Returns how each was built, by key: `claimed` (compiled here), `ready` (done before this
    process looked: loaded), `waited` (loaded after waiting for another process), `alone`
    (no cache, a claim from another host, or the wait ran out: compiled here), `built` (built
    by this process before: not called again)."""
    how = {key: BUILT for key, _ in programs if key in _built_here}
    programs = [(key, build) for key, build in programs if key not in _built_here]
    if not cache_dir:
        for key, build in programs:
            build()
            how[key] = ALONE
        _built_here.update(how)
        return how
    try:
        claims = Claims(Path(cache_dir) / "claims")
    except OSError:  # a cache folder this process cannot write to: no one to share with
        return {**how, **build_in_turn(programs, None)}
    later = []
    for key, build in programs:
        if claims.is_done(key):
            build()
            how[key] = READY
        elif claims.try_claim(key):
            built = False
            try:
                build()
                built = True
            finally:
                claims.finish(key, built)
            how[key] = CLAIMED
        elif claims.held_elsewhere(key):
            later.append((key, build))
        else:
            build()
            how[key] = ALONE
    for key, build in later:
        deadline = time.monotonic() + wait_limit
        while claims.held_elsewhere(key) and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        how[key] = WAITED if claims.is_done(key) else ALONE
        build()
    _built_here.update(how)
    return how
