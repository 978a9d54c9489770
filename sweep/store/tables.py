"""The Parquet tables of a results directory, each file written whole (store.files):

- summary.parquet/<pack>.parquet and curves.parquet/<pack>.parquet: the rows of the points whose
  record counts in that pack (store.ledger writes them), so that filing a point rewrites its
  pack's two files and no other, and no write grows with the sweep. `pandas.read_parquet` reads
  either folder whole (every summary file has the same columns, store.ledger.summary_schema);
- traces/<trial>.parquet, interpolations/<name>.parquet, lr-range/range.parquet: what the
  commands trace, interpolate and measure.

pandas and pyarrow are imported where a table is made or read: `tiltsweep status` reads at most
Parquet footers, and starts in half the time without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Optional

from tiltsweep.sweep.store import layout
from tiltsweep.sweep.store.files import Files, for_each

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


class CorruptTable(ValueError):
    """A Parquet file that cannot be read (truncated, garbage); `name` is its path in the directory."""

    def __init__(self, name: str, shown: str, reason: str):
        self.name = name
        super().__init__(f"{shown}: unreadable Parquet ({reason})")


def parquet_bytes(frame) -> bytes:
    """An Arrow table, a DataFrame, or columns {name: [values]} as the bytes of a Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(frame, dict):
        frame = pa.table(frame)
    elif not isinstance(frame, pa.Table):
        frame = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    pq.write_table(frame, sink)
    return sink.getvalue().to_pybytes()


class Tables:
    def __init__(self, files: Files):
        self.files = files

    # --- any table ------------------------------------------------------------------------------

    def write(self, name: str, frame) -> None:
        self.files.write(name, parquet_bytes(frame))

    def read(self, name: str, columns: Optional[list[str]] = None, arrow: bool = False):
        """One file (or some of its columns) as a DataFrame (an Arrow table with `arrow`);
        FileNotFoundError if there is none, CorruptTable if it cannot be read."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.files.exists(name):
            raise FileNotFoundError(self.files.show(name))
        try:
            where, filesystem = self.files.arrow(name)
            table = pq.read_table(where, columns=columns, filesystem=filesystem)
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as error:
            raise CorruptTable(name, self.files.show(name), str(error).splitlines()[0]) from None
        return table if arrow else table.to_pandas()

    def footer(self, name: str):
        """The file's Parquet footer (its schema, its number of rows), cheaply; CorruptTable if it
        cannot be read."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            where, filesystem = self.files.arrow(name)
            return pq.read_metadata(where, filesystem=filesystem)
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as error:
            raise CorruptTable(name, self.files.show(name), str(error).splitlines()[0]) from None

    def unreadable(self, names: list[str]) -> list[CorruptTable]:
        """The files among `names` whose footer cannot be read (several read at once where the
        files are far: store.files' `parallel`)."""
        def check(name: str):
            try:
                self.footer(name)
            except CorruptTable as error:
                return error
            return None

        return [error for error in for_each(self.files, check, names) if error is not None]

    def read_all(self, names: list[str], columns: list[str], on_corrupt: Optional[Callable[[CorruptTable], None]] = None) -> pd.DataFrame:
        """The tables of the files, one after another (each read alone, so that files whose columns
        differ still line up); an unreadable file goes to on_corrupt (or raises)."""
        import pandas as pd

        frames = []
        for name in names:
            try:
                frames.append(self.read(name))
            except FileNotFoundError:
                continue  # replaced by a filing since it was listed
            except CorruptTable as error:
                if on_corrupt is None:
                    raise
                on_corrupt(error)
        frames = [frame for frame in frames if len(frame)]
        if not frames:
            return pd.DataFrame(columns=columns)
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def replace_rows(self, name: str, rows: list[dict], leaving: Iterable[str] = (), replace_all: bool = False,
                     schema: Optional["pa.Schema"] = None) -> None:
        """Rewrite one pack's table file: without its rows of the points `leaving` (or any of its
        rows, with `replace_all`), with `rows` (dicts with a `trial_id`) after them, typed by
        `schema` where given (else by their values); the file goes when no row is left.
        CorruptTable if the file there cannot be read."""
        import pyarrow as pa
        import pyarrow.compute as pc

        tables = []
        if self.files.exists(name) and not replace_all:
            kept = self.read(name, arrow=True)
            tables.append(kept.filter(pc.invert(pc.is_in(kept["trial_id"], value_set=pa.array(list(leaving), pa.string())))))
        if rows:
            names = list(dict.fromkeys(column for row in rows for column in row))  # every row's columns, in order
            tables.append(pa.Table.from_pylist(rows, schema=schema) if schema else pa.table({column: [row.get(column) for row in rows] for column in names}))
        tables = [table for table in tables if table.num_rows]
        if not tables:
            self.files.delete(name)
            return
        self.write(name, pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0])

    # --- the sweep's two tables -------------------------------------------------------------------

    def summary_files(self) -> list[str]:
        return [f"{layout.SUMMARY}/{name}" for name in self.files.names(layout.SUMMARY, ".parquet")]

    def curve_files(self) -> list[str]:
        return [f"{layout.CURVES}/{name}" for name in self.files.names(layout.CURVES, ".parquet")]

    def summary(self, columns: Iterable[str] = (), on_corrupt: Optional[Callable[[CorruptTable], None]] = None) -> pd.DataFrame:
        """Every pack's summary rows (empty, with the given columns, before the first point is filed)."""
        return self.read_all(self.summary_files(), list(columns), on_corrupt)

    def curves(self, trial_ids: Optional[Iterable[str]] = None, on_corrupt: Optional[Callable[[CorruptTable], None]] = None) -> pd.DataFrame:
        """The curves of the given points (all by default), file by file, so points whose metric
        columns differ still line up; an unreadable file goes to on_corrupt (or raises)."""
        curves = self.read_all(self.curve_files(), ["trial_id", "step", "epoch"], on_corrupt)
        return curves if trial_ids is None else curves[curves["trial_id"].isin(set(trial_ids))].reset_index(drop=True)

    def summary_changed(self) -> object:
        """A token that changes whenever a point is filed into the summary (store.files.changed)."""
        return self.files.changed(layout.SUMMARY)

    # --- what the commands measure: traces, interpolations, range tests ------------------------

    def write_trace(self, trial_id: str, frame) -> str:
        """traces/<trial>.parquet; returns where it went."""
        return self._written(layout.trace(trial_id), frame)

    def write_interpolation(self, name: str, frame) -> str:
        """interpolations/<name>.parquet; returns where it went."""
        return self._written(layout.interpolation(name), frame)

    def write_lr_range(self, frame) -> str:
        """lr-range/range.parquet; returns where it went."""
        return self._written(layout.LR_RANGE, frame)

    def _written(self, name: str, frame) -> str:
        self.write(name, frame)
        return self.files.show(name)

    def trace(self, trial_id: str) -> Optional[pd.DataFrame]:
        """The point's trace (`tiltsweep trace`), or None if it has none."""
        try:
            return self.read(layout.trace(trial_id))
        except FileNotFoundError:
            return None

    def traced(self) -> list[str]:
        """The points with a trace."""
        return [name.removesuffix(".parquet") for name in self.files.names(layout.TRACES, ".parquet")]
