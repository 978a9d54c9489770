"""Atomic file replacement: write aside, flush to disk, rename over the target.

A reader (or a process killed at any moment) sees either the old content or the new, never a
half-written file. The aside file starts with '.', so directory readers skip it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

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
        os.replace(aside, path)
    finally:
        aside.unlink(missing_ok=True)
