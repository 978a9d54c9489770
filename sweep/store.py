"""Parquet reading and writing: the one module that touches Parquet.

- `summary.parquet` is one file, rewritten whole (write aside, then rename) whenever trials are
  filed, so every row has every column and `pandas.read_parquet` reads it directly.
- `curves.parquet/` is a directory with one file per trial, `<trial_id>.parquet`, written aside
  and renamed into place; `pandas.read_parquet` reads the directory. A trial that runs again
  replaces its file, so its curve never appears twice. Files whose names start with `.` (the
  files being written) are ignored by readers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Optional

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tiltsweep.sweep.atomic import atomic_write


class CorruptTable(ValueError):
    """A Parquet file that cannot be read (truncated, garbage)."""

    def __init__(self, path: Path, reason: str):
        self.path = Path(path)
        super().__init__(f"{path}: unreadable Parquet ({reason})")


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` to `path` atomically: readers see the old file or the new one, never half."""
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    atomic_write(Path(path), sink.getvalue().to_pybytes())


def read_table(path: Path) -> pd.DataFrame:
    """One Parquet file as a DataFrame; CorruptTable if it cannot be read."""
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as error:
        raise CorruptTable(path, str(error).splitlines()[0]) from None


def curve_path(curves_dir: Path, trial_id: str) -> Path:
    return Path(curves_dir) / f"{trial_id}.parquet"


def write_curve(curves_dir: Path, trial_id: str, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)
    frame.insert(0, "trial_id", trial_id)
    write_table(frame, curve_path(curves_dir, trial_id))


def curve_files(curves_dir: Path) -> list[Path]:
    directory = Path(curves_dir)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.parquet") if not p.name.startswith("."))


def read_curves(
    curves_dir: Path, trial_ids: Optional[Iterable[str]] = None, on_corrupt: Optional[Callable[[CorruptTable], None]] = None
) -> pd.DataFrame:
    """The curves of the given trials (all by default), file by file, so trials whose metric
    columns differ still line up; an unreadable file goes to on_corrupt (or raises)."""
    wanted = None if trial_ids is None else set(trial_ids)
    frames = []
    for path in curve_files(curves_dir):
        if wanted is not None and path.stem not in wanted:
            continue
        try:
            frames.append(read_table(path))
        except CorruptTable as error:
            if on_corrupt is None:
                raise
            on_corrupt(error)
    if not frames:
        return pd.DataFrame(columns=["trial_id", "step", "epoch"])
    return pd.concat(frames, ignore_index=True)


def check_readable(path: Path) -> None:
    """Raise CorruptTable unless the file's Parquet footer and schema can be read (cheap)."""
    try:
        pq.read_metadata(path)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as error:
        raise CorruptTable(path, str(error).splitlines()[0]) from None
