"""The files of one results directory, by path relative to its root (store.layout names them):
whole-file writes that no reader sees half done, reads, listings, moves and removals.

A file is written aside (a name starting with '.', which listings skip), flushed to disk and
renamed over its target, so a reader, or a process killed at any moment, sees either the old
content or the new one, never half of it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole: aside, flushed, renamed over it."""
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


class LocalFiles:
    """A results directory on a local or shared disk."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, name: str) -> Path:
        return self.root / name

    def show(self, name: str = "") -> str:
        """How a message names the file."""
        return str(self.path(name)) if name else str(self.root)

    def read(self, name: str) -> bytes:
        """The file's bytes; FileNotFoundError if there is none."""
        return self.path(name).read_bytes()

    def write(self, name: str, data: bytes) -> None:
        atomic_write(self.path(name), data)

    def append(self, name: str, data: bytes) -> None:
        """Add `data` at the end of the file, flushed to disk (not atomic: a killed writer may
        leave a torn end, which the file's format must detect)."""
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def open(self, name: str) -> BinaryIO:
        return open(self.path(name), "rb")

    def truncate(self, name: str, size: int) -> None:
        os.truncate(self.path(name), size)

    def size(self, name: str) -> int:
        return self.path(name).stat().st_size

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def is_folder(self, name: str) -> bool:
        return self.path(name).is_dir()

    def names(self, folder: str, suffix: str = "") -> list[str]:
        """The files in `folder` ending in `suffix`, sorted, without those being written."""
        try:
            entries = os.scandir(self.path(folder))
        except (FileNotFoundError, NotADirectoryError):
            return []
        with entries:
            return sorted(e.name for e in entries if e.is_file() and e.name.endswith(suffix) and not e.name.startswith("."))

    def folders(self, folder: str) -> list[str]:
        try:
            entries = os.scandir(self.path(folder))
        except (FileNotFoundError, NotADirectoryError):
            return []
        with entries:
            return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))

    def changed(self, folder: str) -> object:
        """A token that changes when a file is written into `folder` (None while there is none)."""
        try:
            return self.path(folder).stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def delete(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)

    def delete_folder(self, folder: str) -> None:
        shutil.rmtree(self.path(folder), ignore_errors=True)

    def move(self, name: str, to: str) -> bool:
        """Rename `name` to `to`; False if `name` was gone."""
        target = self.path(to)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.path(name).replace(target)
        except FileNotFoundError:
            return False
        return True

    def remove_stale_asides(self, keep: str) -> list[Path]:
        """Delete the aside files that killed writers left (only safe while nobody writes), but
        those under the folder `keep` (quarantine)."""
        stale = [p for p in self.root.rglob(".*.tmp") if p.is_file() and keep not in p.relative_to(self.root).parts]
        for path in stale:
            path.unlink(missing_ok=True)
        return stale
