"""What the records of a results directory add up to: the two tables the driver files them into.

summary.parquet/ has one row per recorded point: `trial_id`, `status`, one column per swept axis
(named by its path, or `amplitude`, `period`, `seed`; typed as the config types it, JSON text where
no one type holds the axis's values), the final `train_accuracy`, `val_accuracy`, `train_loss`,
`val_loss`, `best_val_accuracy`, `steps`, `epochs`, `wall_seconds`, `resumed_from_epoch`,
`attempts`, `code_version`, `error`, `finished_at` and the full `config` as JSON. Its file
<pack>.parquet holds the rows of the points whose record counts in that pack, and
curves.parquet/<pack>.parquet their curves. Both are a function of the records, so they can
always be rebuilt: an unreadable file is moved to quarantine and written again.

    ledger = Ledger(results, axes)   # the driver's, under the run lock
    ledger.sync()                    # rebuild both tables from the records
    ledger.file(pack_id, trial_ids)  # file newly finished points (run.filer does, on a thread)
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Callable, Iterable, NamedTuple, Optional

from tiltsweep.sweep.store import layout
from tiltsweep.sweep.store.directory import ResultsDir, SweepDescription
from tiltsweep.sweep.store.records import CorruptFile, Outcome, TrialRecord
from tiltsweep.sweep.store.tables import CorruptTable

if TYPE_CHECKING:
    import pyarrow as pa  # `tiltsweep status` loads it only to read a table

FINAL_METRICS = ("train_accuracy", "val_accuracy", "train_loss", "val_loss")
SUMMARY_COLUMNS = (
    "trial_id", "status", *FINAL_METRICS, "best_val_accuracy", "steps", "epochs", "wall_seconds",
    "resumed_from_epoch", "attempts", "code_version", "error", "finished_at", "config",
)
PLOTTABLE_COLUMNS = (*FINAL_METRICS, "best_val_accuracy", "steps", "wall_seconds")


def config_value(config: dict, path: str) -> Any:
    node: Any = config
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def as_json_text(values: Iterable) -> bool:
    """Whether an axis column holds its values as JSON text: lists and mappings, and values of
    several kinds (`batch_size: [full, 32]`), which no one Parquet type holds. Integers and
    floats are one kind (float)."""
    kinds = {float if type(value) is int else type(value) for value in values if value is not None}
    return len(kinds) > 1 or bool(kinds & {list, dict})


def axis_type(values: Iterable) -> "pa.DataType":
    """The Parquet type of an axis column, from every value the sweep gives the axis."""
    import pyarrow as pa

    values = [value for value in values if value is not None]
    if as_json_text(values) or not values:
        return pa.string()
    return pa.array(values).type  # bool, int64, double or string


def summary_row(record: TrialRecord, axes: dict[str, str], json_columns: Iterable[str] = ()) -> dict:
    """One row of summary.parquet; axes: column name -> config path of every swept axis;
    json_columns: those of them held as JSON text (as_json_text)."""
    final = record.history[-1] if record.history else {}
    history_val = [row["val_accuracy"] for row in record.history if math.isfinite(row.get("val_accuracy", math.nan))]
    row = {"trial_id": record.trial_id, "status": record.status}
    for column, path in axes.items():
        value = config_value(record.config, path)
        row[column] = json.dumps(value) if value is not None and (column in json_columns or isinstance(value, (list, dict))) else value
    row.update({name: float(final.get(name, math.nan)) for name in FINAL_METRICS})
    row["best_val_accuracy"] = max(history_val) if history_val else math.nan
    row.update(steps=record.steps, epochs=record.epochs, wall_seconds=record.wall_seconds,
               resumed_from_epoch=record.resumed_from_epoch, attempts=record.attempts,
               code_version=record.code_version, error=record.error, finished_at=record.finished_at)
    row["config"] = json.dumps(record.config, sort_keys=True)
    return row


class Counted(NamedTuple):
    """Of the record of a point that counts: its status, the pack holding it, its precedence."""

    status: str
    pack_id: str
    precedence: tuple


class Ledger:
    """The driver's view of the records; files finished points into the tables: each pack's
    summary and curve files hold the rows of the points whose record counts in that pack. The
    driver keeps a point's status and pack, no row: a filing reads its pack's files back and
    rewrites them, so the driver's memory does not grow with the rows."""

    def __init__(self, results: ResultsDir, axes: dict[str, str], on_problem: Callable[[str], None] = lambda message: None):
        """axes: summary column name -> config path of every swept axis. The summary's columns
        are typed by the values sweep.json gives each axis (by the rows' own where it has none)."""
        self.results, self.axes, self.on_problem = results, dict(axes), on_problem
        self.counted: dict[str, Counted] = {}  # trial id -> its record that counts
        self.schema, self.json_columns = summary_schema(results.description() if results.described() else None, self.axes)

    def sync(self) -> None:
        """Rebuild the tables from the records, quarantining whatever cannot be read. Runs while
        no point is trained (before and after a run), so half-written aside files are stale."""
        self.results.remove_stale_asides()
        self.counted = {}
        # Each point's record that counts, from the packs' headers; a pack's records are read only
        # where its tables do not hold what its header says (one pack at a time): a sync after a
        # run decodes no record, and the driver never has every record in memory at once.
        outcomes = self.results.records.outcomes(on_corrupt=self.quarantine_file)
        held: dict[str, dict[str, Outcome]] = {}
        for trial_id, outcome in outcomes.items():
            held.setdefault(outcome.pack_id, {})[trial_id] = outcome
            self.counted[trial_id] = Counted(outcome.status, outcome.pack_id, outcome.precedence())
        for name in [*self.results.tables.summary_files(), *self.results.tables.curve_files()]:
            if pack_of(name) not in held:  # its pack's records are gone (quarantined) or superseded: its points' rows are elsewhere
                self.results.files.delete(name)
        for pack_id, its in held.items():
            broken = [table for table in self.tables(pack_id) if not self.intact(table, its)]
            if not broken:
                continue
            try:
                records = list(self.results.records.read(pack_id, only=its).records.values())
            except CorruptFile as error:  # damaged since its header was read: its points train again
                self.quarantine_file(error)
                for trial_id in its:
                    del self.counted[trial_id]
                continue
            for table in broken:
                self.results.tables.replace_rows(table.name, table.rows(records), replace_all=True, schema=table.schema)

    def tables(self, pack_id: str) -> list["PackTable"]:
        """The pack's summary and curve files."""
        summary_rows = lambda records: [summary_row(record, self.axes, self.json_columns) for record in records]
        return [PackTable(layout.pack_summary(pack_id), summary_rows, len, self.schema),
                PackTable(layout.pack_curves(pack_id), curve_rows, evaluations)]

    def intact(self, table: "PackTable", held: dict[str, Outcome]) -> bool:
        """Whether a pack's file holds the rows of exactly the points whose records it holds (their
        number, their ids, the summary's columns), as the pack's header says; an unreadable file
        is quarantined."""
        rows = table.rows_of(list(held.values()))
        tables = self.results.tables
        if not self.results.files.exists(table.name):
            return rows == 0
        try:
            footer = tables.footer(table.name)
            ids = set(tables.read(table.name, columns=["trial_id"], arrow=True)["trial_id"].to_pylist())
            return (footer.num_rows == rows and ids == {t for t, outcome in held.items() if table.rows_of([outcome])}
                    and (table.schema is None or footer.schema.to_arrow_schema().remove_metadata() == table.schema))
        except CorruptTable as error:
            self.quarantine(table.name, str(error))
            return False

    def quarantine_file(self, error: CorruptFile) -> None:
        self.quarantine(error.name, error.reason)

    def quarantine(self, name: str, reason: str) -> None:
        moved = self.results.quarantine(name, reason)
        self.on_problem(f"moved unreadable {self.results.files.show(name)} to {moved} ({reason})")

    def take(self, pack_id: str, record: TrialRecord) -> bool:
        """Count `record` if it ranks above the point's record so far."""
        counted = self.counted.get(record.trial_id)
        if counted and record.precedence() <= counted.precedence:
            return False
        self.counted[record.trial_id] = Counted(record.status, pack_id, record.precedence())
        return True

    def holder(self, trial_id: str) -> Optional[str]:
        """The pack whose record of the point counts."""
        counted = self.counted.get(trial_id)
        return counted.pack_id if counted else None

    def file(self, pack_id: str, trial_ids: Iterable[str]) -> dict[str, str]:
        """File newly written records of one pack: their rows into the pack's summary and curve
        files (out of another pack's, for a point retried here). Returns their statuses."""
        trial_ids = list(trial_ids)
        try:
            new = self.results.records.read(pack_id, only=trial_ids).records
        except CorruptFile as error:
            self.quarantine_file(error)
            return {}
        taken = []
        for trial_id in trial_ids:
            record = new.get(trial_id)
            previous = self.holder(trial_id)
            if record is None or not self.take(pack_id, record):
                continue
            taken.append(record)
            if previous not in (None, pack_id):  # retried in this pack: its rows leave the other pack's files
                self.replace(previous, [], leaving=[trial_id])
        if taken:
            self.replace(pack_id, taken, leaving=[record.trial_id for record in taken])
        return {trial_id: new[trial_id].status for trial_id in trial_ids if trial_id in new}

    def replace(self, pack_id: str, records: list[TrialRecord], leaving: Iterable[str]) -> None:
        """The pack's files, read back and rewritten with the rows of `records` in place of those of
        the points `leaving`; a file that cannot be read is rebuilt from the pack's records."""
        for table in self.tables(pack_id):
            try:
                self.results.tables.replace_rows(table.name, table.rows(records), leaving, schema=table.schema)
            except CorruptTable as error:
                self.quarantine(error.name, str(error))
                held = [r for r in self.results.records.read(pack_id).records.values() if self.holder(r.trial_id) == pack_id]
                self.results.tables.replace_rows(table.name, table.rows(held), replace_all=True, schema=table.schema)

    def status_of(self, trial_id: str) -> Optional[str]:
        counted = self.counted.get(trial_id)
        return counted.status if counted else None


class PackTable(NamedTuple):
    """One of a pack's Parquet files: its name in the directory, its rows from records, how many
    rows the records of these outcomes make, its columns' types (None: the rows' own)."""

    name: str
    rows: Callable[[list[TrialRecord]], list[dict]]
    rows_of: Callable[[list[Outcome]], int]
    schema: Optional["pa.Schema"] = None


def pack_of(name: str) -> str:
    """The pack whose table file this is (<folder>/<pack>.parquet)."""
    return name.rsplit("/", 1)[-1].removesuffix(".parquet")


def curve_rows(records: Iterable[TrialRecord]) -> list[dict]:
    return [{"trial_id": record.trial_id, **row} for record in records for row in record.history]


def evaluations(held: list[Outcome]) -> int:
    """The curve rows of these records, from their headers."""
    return sum(outcome.evaluations for outcome in held)


def summary_schema(description: Optional[SweepDescription], axes: dict[str, str]) -> tuple[Optional["pa.Schema"], set[str]]:
    """(the summary's columns and types, the axis columns held as JSON text), from the values the
    sweep gives each axis (sweep.json); (None, set()) where it does not describe them all. Every
    pack's file has these columns, so `pandas.read_parquet` reads the summary directory whole."""
    if description is None or not set(axes) <= set(description.axes):
        return None, set()
    import pyarrow as pa

    values = {column: [] for column in axes}
    for point in description.points.values():
        for column in values:
            values[column].append(point.get(column))
    for combinations in description.shared.values():
        for combination in combinations:
            for column in set(values) & set(combination):
                values[column].append(combination[column])
    text, number, count = pa.string(), pa.float64(), pa.int64()
    types = {"trial_id": text, "status": text, **{column: axis_type(values[column]) for column in axes},
             **{name: number for name in (*FINAL_METRICS, "best_val_accuracy", "wall_seconds")},
             **{name: count for name in ("steps", "epochs", "resumed_from_epoch", "attempts")},
             **{name: text for name in ("code_version", "error", "finished_at", "config")}}
    columns = ["trial_id", "status", *axes, *SUMMARY_COLUMNS[2:]]
    return pa.schema([(column, types[column]) for column in columns]), {column for column in axes if as_json_text(values[column])}
