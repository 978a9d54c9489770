"""What the records of a results directory add up to: the tables the driver files them into,
and where every point of the sweep stands.

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
    filer = Filer(ledger, progress.trial_finished)  # files finished points on a thread of its own
    status = sweep_status(results)   # anyone's, any time: reads files only

Status categories: completed / diverged / failed (the point's record says so); partial (no
record yet, but a checkpoint: interrupted, or running now); pending (nothing yet). Points recorded
but no longer in the sweep are counted apart (`outside_grid`); unreadable files are reported.
"""

from __future__ import annotations

import json
import math
import queue
import shutil
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, NamedTuple, Optional

from tiltsweep.sweep.atomic import remove_stale_asides
from tiltsweep.sweep.errors import Refused
from tiltsweep.sweep.results import (
    CorruptFile, CorruptTable, Outcome, ResultsDir, SweepDescription, TrialRecord, check_readable, curve_rows, read_table,
    replace_rows,
)

if TYPE_CHECKING:
    import pyarrow as pa  # `tiltsweep status` loads it only to read a table

FINAL_METRICS = ("train_accuracy", "val_accuracy", "train_loss", "val_loss")
SUMMARY_COLUMNS = (
    "trial_id", "status", *FINAL_METRICS, "best_val_accuracy", "steps", "epochs", "wall_seconds",
    "resumed_from_epoch", "attempts", "code_version", "error", "finished_at", "config",
)
PLOTTABLE_COLUMNS = (*FINAL_METRICS, "best_val_accuracy", "steps", "wall_seconds")
CATEGORIES = ("completed", "partial", "pending", "failed", "diverged")


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
        self.schema, self.json_columns = summary_schema(results.description(), self.axes)

    def sync(self) -> None:
        """Rebuild the tables from the records, quarantining whatever cannot be read. Runs while
        no point is trained (before and after a run), so half-written aside files are stale."""
        remove_stale_asides(self.results.root)
        adopt_per_point_records(self.results)
        adopt_former_ids(self.results)
        if self.results.summary_dir.is_file():
            self.results.summary_dir.unlink()  # written whole by an older tiltsweep: rebuilt per pack below
        self.counted = {}
        # Each point's record that counts, from the packs' headers; a pack's records are read only
        # where its tables do not hold what its header says (one pack at a time): a sync after a
        # run decodes no record, and the driver never has every record in memory at once.
        outcomes = self.results.outcomes(on_corrupt=self.quarantine_file)
        held: dict[str, dict[str, Outcome]] = {}
        for trial_id, outcome in outcomes.items():
            held.setdefault(outcome.pack_id, {})[trial_id] = outcome
            self.counted[trial_id] = Counted(outcome.status, outcome.pack_id, outcome.precedence())
        for path in [*self.results.summary_files(), *self.results.curve_files()]:
            if path.stem not in held:
                path.unlink()  # its pack's records are gone (quarantined) or superseded: its points' rows are elsewhere
        for pack_id, its in held.items():
            broken = [table for table in self.tables(pack_id) if not self.intact(table, its)]
            if not broken:
                continue
            try:
                records = list(self.results.read_pack(pack_id, only=its).records.values())
            except CorruptFile as error:  # damaged since its header was read: its points train again
                self.quarantine_file(error)
                for trial_id in its:
                    del self.counted[trial_id]
                continue
            for table in broken:
                replace_rows(table.path, table.rows(records), replace_all=True, schema=table.schema)

    def tables(self, pack_id: str) -> list["PackTable"]:
        """The pack's summary and curve files."""
        summary_rows = lambda records: [summary_row(record, self.axes, self.json_columns) for record in records]
        return [PackTable(self.results.summary_path(pack_id), summary_rows, len, self.schema),
                PackTable(self.results.curve_path(pack_id), curve_rows, evaluations)]

    def intact(self, table: "PackTable", held: dict[str, Outcome]) -> bool:
        """Whether a pack's file holds the rows of exactly the points whose records it holds (their
        number, their ids, the summary's columns), as the pack's header says; an unreadable file
        is quarantined."""
        rows = table.rows_of(list(held.values()))
        if rows is None or not table.path.exists():
            return rows == 0 and not table.path.exists()
        try:
            footer = check_readable(table.path)
            ids = set(read_table(table.path, columns=["trial_id"], arrow=True)["trial_id"].to_pylist())
            return (footer.num_rows == rows and ids == {t for t, outcome in held.items() if table.rows_of([outcome])}
                    and (table.schema is None or footer.schema.to_arrow_schema().remove_metadata() == table.schema))
        except CorruptTable as error:
            self.quarantine(table.path, str(error))
            return False

    def quarantine_file(self, error: CorruptFile) -> None:
        self.quarantine(error.path, error.reason)

    def quarantine(self, path, reason: str) -> None:
        moved = self.results.quarantine(path, reason)
        self.on_problem(f"moved unreadable {path} to {moved} ({reason})")

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
            new = self.results.read_pack(pack_id, only=trial_ids).records
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
                replace_rows(table.path, table.rows(records), leaving, schema=table.schema)
            except CorruptTable as error:
                self.quarantine(error.path, str(error))
                held = [r for r in self.results.read_pack(pack_id).records.values() if self.holder(r.trial_id) == pack_id]
                replace_rows(table.path, table.rows(held), replace_all=True, schema=table.schema)

    def status_of(self, trial_id: str) -> Optional[str]:
        counted = self.counted.get(trial_id)
        return counted.status if counted else None


class PackTable(NamedTuple):
    """One of a pack's Parquet files: where it is, its rows from records, how many rows the
    records of these outcomes make (None: not known from them), its columns' types (None: the
    rows' own)."""

    path: Any
    rows: Callable[[list[TrialRecord]], list[dict]]
    rows_of: Callable[[list[Outcome]], Optional[int]]
    schema: Optional["pa.Schema"] = None


def evaluations(held: list[Outcome]) -> Optional[int]:
    """The curve rows of these records, from their headers (None where a header predates the count)."""
    counts = [outcome.evaluations for outcome in held]
    return None if None in counts else sum(counts)


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



def adopt_per_point_records(results: ResultsDir) -> None:
    """A directory written by tiltsweep 0.1 has a record file per point, trials/<id>.msgpack:
    they go into one pack file, records/p-adopted.msgpack, and trials/ is renamed trials.adopted/
    (kept, not deleted). Its per-point curve files are rebuilt into that pack's by the sync."""
    import msgpack

    legacy = results.root / "trials"
    if not legacy.is_dir():
        return
    pack = results.read_pack("p-adopted")
    for path in sorted(legacy.glob("*.msgpack")):
        try:
            record = TrialRecord.model_validate(msgpack.unpackb(path.read_bytes(), raw=False, strict_map_key=False))
        except (ValueError, TypeError, msgpack.UnpackException):
            continue  # unreadable: its point runs again; the file stays in trials.adopted/
        pack.records[record.trial_id] = record
    results.write_pack(pack)
    legacy.rename(results.root / "trials.adopted")


def adopt_former_ids(results: ResultsDir) -> None:
    """A point without a final record whose former id (sweep.json's `former`: the id one of its
    grid combinations had before amplitude 1's irrelevant settings left the identity) has one
    gets a copy of that record under its own id, in records/p-former.msgpack. The former records
    stay where they are; status does not count them."""
    description = results.description()
    if description is None or not description.former:
        return
    outcomes = results.outcomes(on_corrupt=lambda error: None)  # the sync quarantines what is unreadable
    final = lambda trial_id: trial_id in outcomes and outcomes[trial_id].final
    adopted = {}
    for trial_id, former_ids in description.former.items():
        if final(trial_id):
            continue
        found = next((former for former in former_ids if final(former)), None)
        if found:
            adopted[found] = trial_id
        elif not results.checkpoint_files(trial_id):
            started = next((former for former in former_ids if results.checkpoint_files(former)), None)
            if started:  # a former id's training resumes from its checkpoints
                shutil.copytree(results.checkpoints_dir / started, results.checkpoints_dir / trial_id, dirs_exist_ok=True)
    if not adopted:
        return
    pack = results.read_pack("p-former")
    for former, trial_id in adopted.items():
        try:
            record = results.read_pack(outcomes[former].pack_id, only=[former]).records[former]
        except CorruptFile:
            continue  # the sync quarantines it; the point trains again
        pack.records[trial_id] = record.model_copy(update={"trial_id": trial_id})
    results.write_pack(pack)


class Filer:
    """Files finished points on a thread of its own, off Tune's loop. Tune runs its callbacks on
    the thread that also starts the next trial, so a worker would otherwise wait for every filing
    before its next pack. The workers write each point's record before reporting it, so filing it
    a moment later loses nothing. Points that finish while the filer is busy are filed together:
    one rewrite of their pack's files.

        filer.file(pack_id, [trial ids])   # returns at once
        filer.close()                      # files what is left; re-raises the first filing error
    """

    def __init__(self, ledger: Ledger, on_filed: Callable[[str, str], None]):
        """on_filed(trial_id, status) after each point is filed."""
        self.ledger, self.on_filed = ledger, on_filed
        self.pending: queue.SimpleQueue = queue.SimpleQueue()
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, name="tiltsweep-filer", daemon=True)
        self.thread.start()

    def file(self, pack_id: str, trial_ids: Iterable[str]) -> None:
        self.pending.put((pack_id, list(trial_ids)))

    def close(self) -> None:
        self.pending.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        closing = False
        while not closing:
            batch = [self.pending.get()]
            while not self.pending.empty():  # what finished while the last batch was filed
                batch.append(self.pending.get())
            closing = None in batch
            if self.error is not None:
                continue
            by_pack: dict[str, list[str]] = {}  # one rewrite of a pack's files for all its points
            for pack_id, trial_ids in (item for item in batch if item is not None):
                by_pack.setdefault(pack_id, []).extend(trial_ids)
            try:
                for pack_id, trial_ids in by_pack.items():
                    statuses = self.ledger.file(pack_id, trial_ids)
                    for trial_id in trial_ids:
                        self.on_filed(trial_id, statuses.get(trial_id, "failed"))
            except BaseException as error:  # kept for close(); the records stay the truth
                self.error = error


# --- where points stand ---------------------------------------------------------------------------


class OutdatedResults(Refused):
    """A results directory written by tiltsweep 0.1, before sweep.json described its sweep."""


def description_of(results: ResultsDir) -> SweepDescription:
    description = results.description()
    if description is None:
        raise OutdatedResults(f"{results.root}: written by an older tiltsweep (sweep.json does not describe the sweep); "
                              f"`tiltsweep resume {results.root}` brings it up to date")
    return description


@dataclass
class SweepStatus:
    name: str
    total: int
    trials: dict[str, list[str]] = field(default_factory=lambda: {c: [] for c in CATEGORIES})
    outside_grid: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    points: dict[str, dict] = field(default_factory=dict, repr=False)  # trial id -> its axis values

    def counts(self) -> dict[str, int]:
        return {category: len(self.trials[category]) for category in CATEGORIES}

    def as_json(self) -> dict:
        return {
            **self.counts(), "total": self.total, "name": self.name, "outside_grid": len(self.outside_grid),
            "unreadable": self.unreadable, "trials": self.trials, "errors": self.errors,
        }


def sweep_status(results: ResultsDir) -> SweepStatus:
    description = description_of(results)
    status = SweepStatus(description.name, len(description.points), points=description.points)
    recorded = results.outcomes(on_corrupt=lambda error: status.unreadable.append(str(error)))
    status.errors = {trial_id: record.error for trial_id, record in recorded.items() if record.status == "failed"}
    status.unreadable.extend(unreadable_tables(results))
    checkpointed = set(results.checkpointed_ids())
    for trial_id in checkpointed - set(recorded):
        try:
            for path in results.checkpoint_files(trial_id)[:1]:
                results.read_checkpoint(path)
        except CorruptFile as error:
            status.unreadable.append(str(error))
        except FileNotFoundError:
            pass
    for trial_id in description.points:
        record = recorded.get(trial_id)
        category = record.status if record else ("partial" if trial_id in checkpointed else "pending")
        status.trials[category].append(trial_id)
    adopted = {former for former_ids in description.former.values() for former in former_ids}
    status.outside_grid = sorted(set(recorded) - set(description.points) - adopted)
    return status


def unreadable_tables(results: ResultsDir) -> list[str]:
    problems = []
    tables = ([results.summary_dir] if results.summary_dir.is_file() else []) + results.summary_files() + results.curve_files()
    for path in tables:
        try:
            check_readable(path)
        except CorruptTable as error:
            problems.append(str(error))
    return problems


def shorten(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_status(status: SweepStatus, root, listed: int = 8) -> str:
    lines = [f"{status.name} ({root}): {status.total} points"]
    for category in CATEGORIES:
        ids = status.trials[category]
        lines.append(f"  {category:<10}{len(ids):>6}")
        if category != "completed":
            for trial_id in ids[:listed]:
                axes = ", ".join(f"{column}={value}" for column, value in status.points[trial_id].items())
                error = f": {shorten(status.errors[trial_id])}" if trial_id in status.errors else ""
                lines.append(f"              {trial_id}  {axes}{error}")
            if len(ids) > listed:
                lines.append(f"              ... and {len(ids) - listed} more")
    if status.outside_grid:
        lines.append(f"  {len(status.outside_grid)} recorded points are not in the current grid (kept, not counted)")
    for problem in status.unreadable:
        lines.append(f"  unreadable: {problem} (the next run moves it to quarantine/ and rebuilds it or re-runs its point)")
    return "\n".join(lines)
