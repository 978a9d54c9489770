"""Atomic file replacement: write aside, flush to disk, rename over the target.

A reader (or a process killed at any moment) sees either the old content or the new, never a
half-written file. The aside file starts with '.', so directory readers skip it.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections import Counter
from pathlib import Path

# Failpoints, for tests of crash safety: TILTSWEEP_FAILPOINTS="replace:summary.parquet@3" makes
# this process SIGKILL itself the 3rd time it is about to rename a written summary.parquet into
# place, i.e. in the middle of writing results. Read once; off (and free) when unset.
FAILPOINTS = dict(
    (name, int(hit)) for name, _, hit in (item.strip().rpartition("@") for item in os.environ.get("TILTSWEEP_FAILPOINTS", "").split(",") if "@" in item)
)
_hits: Counter = Counter()


def failpoint(name: str) -> None:
    if name in FAILPOINTS:
        _hits[name] += 1
        if _hits[name] == FAILPOINTS[name]:
            os.kill(os.getpid(), signal.SIGKILL)


def remove_stale_asides(root: Path) -> list[Path]:
    """Delete aside files that a killed writer left (only safe while nobody writes)."""
    stale = [p for p in Path(root).rglob(".*.tmp") if p.is_file() and "quarantine" not in p.parts]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def atomic_write(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(aside, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if FAILPOINTS:
            failpoint(f"replace:{path.name}")
        os.replace(aside, path)
    finally:
        aside.unlink(missing_ok=True)
