"""Workers on one machine split the compiling of a shape's programs instead of each compiling all.

A worker about to train a new shape needs several programs (the initialization, the training
loop). With the persistent compilation cache on (trainers.compilation.cache), it builds them in turn
and claims each before compiling it by taking its lock, `<cache>/claims/<key>.lock`, without
waiting (filelock: an OS lock, which the OS releases when its process ends, however it ends). A
program whose lock another process holds is left for later; once the worker has built the
others, it waits for that lock, and then loads the program from the cache, where its builder
marked it done (`<key>.done`). So two workers that start one shape together compile one program
each and load the other's, instead of both compiling both (on a 2-core machine, ~0.7 s less per
worker for the spiral MLP: benchmarks/README.md).

What can go wrong costs time, never a wrong program (the cache itself keys programs by their
contents):
- A worker killed mid-compile holds no lock any more: the next one compiles the program.
- A worker waits at most `wait_limit` seconds, then compiles the program itself.
- A folder that takes no locks, or cannot be written, means compiling unshared.
- A `.done` marker whose program the cache has since dropped means one more compilation.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Optional, Sequence

from filelock import FileLock, Timeout

WAIT_LIMIT = 120.0

CLAIMED, READY, WAITED, ALONE, BUILT = "claimed", "ready", "waited", "alone", "built"
_built_here: set[str] = set()


def claim_path(directory: Path, key: str, suffix: str) -> Path:
    """The `suffix` file (lock, done) of the program named `key` in the claims folder; a key is
    derived the same way by every process from what determines the program."""
    return directory / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.{suffix}"


def build_in_turn(
    programs: Sequence[tuple[str, Callable[[], object]]],
    cache_dir: Optional[str],
    wait_limit: float = WAIT_LIMIT,
) -> dict[str, str]:
    """Call every builder of `programs` ([(key, builder)], each builder compiling its program or
    loading it from the cache), sharing the compiling with the other processes that use this
    cache folder. Returns how each was built, by key: `claimed` (compiled here), `ready` (done
    before this process looked: loaded), `waited` (loaded after waiting for another process),
    `alone` (no cache, no locks, or the wait ran out or found it undone: built here), `built`
    (built by this process before: not called again)."""
    how = {key: BUILT for key, _ in programs if key in _built_here}
    programs = [(key, build) for key, build in programs if key not in _built_here]
    claims = Path(cache_dir) / "claims" if cache_dir else None
    if claims is not None:
        try:
            claims.mkdir(parents=True, exist_ok=True)
        except OSError:  # a cache folder this process cannot write to: no one to share with
            claims = None
    later = []
    for key, build in programs:
        if claims is None:
            how[key] = alone(build)
            continue
        done = claim_path(claims, key, "done")
        if done.exists():
            build()
            how[key] = READY
            continue
        lock = FileLock(claim_path(claims, key, "lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:  # another process is building it
            later.append((key, build, lock, done))
            continue
        except OSError:  # no locks on this file system
            how[key] = alone(build)
            continue
        try:
            build()
            done.touch()
        finally:
            lock.release()
        how[key] = CLAIMED
    for key, build, lock, done in later:
        try:
            with lock.acquire(timeout=wait_limit):
                pass
            how[key] = WAITED if done.exists() else ALONE
        except Timeout:
            how[key] = ALONE
        build()
    _built_here.update(how)
    return how


def alone(build: Callable[[], object]) -> str:
    build()
    return ALONE
