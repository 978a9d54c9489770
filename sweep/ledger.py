"""What the records of a results directory add up to: the tables the driver files them into,
and where every point of the sweep stands.

summary.parquet has one row per recorded point: `trial_id`, `status`, one column per swept axis
(named by its path, or `amplitude`, `period`, `seed`; typed as the config types it), the final
`train_accuracy`, `val_accuracy`, `train_loss`, `val_loss`, `best_val_accuracy`, `steps`,
`epochs`, `wall_seconds`, `resumed_from_epoch`, `attempts`, `code_version`, `error`, `finished_at`
and the full `config` as JSON. curves.parquet/<pack>.parquet holds the curves of the points whose
record is in that pack. Both are a function of the records, so they can always be rebuilt: an
unreadable table is moved to quarantine and written again.

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
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, NamedTuple, Optional

from tiltsweep.sweep.atomic import remove_stale_asides
from tiltsweep.sweep.errors import Refused
from tiltsweep.sweep.results import (
    CorruptFile, CorruptTable, ResultsDir, SweepDescription, TrialRecord, check_readable, read_table, write_table,
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
FOLD_AT_LEAST = 1000  # pending rows that a sync folds into the table at once


def config_value(config: dict, path: str) -> Any:
    node: Any = config
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return json.dumps(node) if isinstance(node, (list, dict)) else node


def summary_row(record: TrialRecord, axes: dict[str, str]) -> dict:
    """One row of summary.parquet; axes: column name -> config path of every swept axis."""
    final = record.history[-1] if record.history else {}
    history_val = [row["val_accuracy"] for row in record.history if math.isfinite(row.get("val_accuracy", math.nan))]
    row = {"trial_id": record.trial_id, "status": record.status}
    row.update({column: config_value(record.config, path) for column, path in axes.items()})
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
    """The driver's view of the records; files finished points into the tables.

    The summary's rows are kept as one Arrow table (`table`), into which the rows filed since
    are folded (`pending`) before each rewrite, at most a few thousand at a time: a row held so
    takes the bytes it has in summary.parquet, not the ~6 KiB a row of Python objects takes of
    the driver's memory, so that the driver's memory barely grows with the points."""

    def __init__(self, results: ResultsDir, axes: dict[str, str], on_problem: Callable[[str], None] = lambda message: None):
        """axes: summary column name -> config path of every swept axis."""
        self.results, self.axes, self.on_problem = results, dict(axes), on_problem
        self.columns = ["trial_id", "status", *self.axes, *SUMMARY_COLUMNS[2:]]
        self.counted: dict[str, Counted] = {}  # trial id -> its record that counts
        self.table: Optional["pa.Table"] = None  # the summary's rows, but those pending
        self.pending: dict[str, dict] = {}  # trial id -> its summary row, filed since the last fold

    def sync(self) -> None:
        """Rebuild both tables from the records, quarantining whatever cannot be read. Runs while
        no point is trained (before and after a run), so half-written aside files are stale."""
        remove_stale_asides(self.results.root)
        adopt_per_point_records(self.results)
        adopt_former_ids(self.results)
        self.counted, self.table, self.pending = {}, None, {}
        # First which pack holds each point's record (from the packs' headers), then one pack's
        # records at a time: the driver never has every record in memory at once.
        held: dict[str, list[str]] = {}
        for trial_id, outcome in self.results.outcomes(on_corrupt=self.quarantine_file).items():
            held.setdefault(outcome.pack_id, []).append(trial_id)
        for path in self.results.curve_files():
            if path.stem not in held:
                path.unlink()  # its pack's records are gone (quarantined) or superseded: its points' curves are elsewhere
        for pack_id, trial_ids in held.items():
            try:
                records = list(self.results.read_pack(pack_id, only=trial_ids).records.values())
            except CorruptFile as error:  # damaged since its header was read
                self.quarantine_file(error)
                continue
            for record in records:
                self.take(pack_id, record)
            self.ensure_curves(pack_id, records)
            if len(self.pending) >= max(FOLD_AT_LEAST, len(self.table or ()) // 4):  # each row is copied a few times at most
                self.fold()
        if self.results.summary_path.exists():
            try:
                check_readable(self.results.summary_path)
            except CorruptTable as error:
                self.quarantine(error.path, str(error))
        self.write_summary()

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
        self.pending[record.trial_id] = summary_row(record, self.axes)
        self.counted[record.trial_id] = Counted(record.status, pack_id, record.precedence())
        return True

    def holder(self, trial_id: str) -> Optional[str]:
        """The pack whose record of the point counts."""
        counted = self.counted.get(trial_id)
        return counted.pack_id if counted else None

    def ensure_curves(self, pack_id: str, records: list[TrialRecord]) -> None:
        """Leave the pack's curve file if it is readable and holds exactly these points' curves."""
        path = self.results.curve_path(pack_id)
        wanted = {record.trial_id for record in records if record.history}
        if path.exists():
            try:
                check_readable(path)
                if set(read_table(path, columns=["trial_id"])["trial_id"]) == wanted:
                    return
            except CorruptTable as error:
                self.quarantine(path, str(error))
        self.results.write_curves(pack_id, records)

    def file(self, pack_id: str, trial_ids: Iterable[str]) -> dict[str, str]:
        """File newly written records of one pack: their curves into the pack's curve file, and
        their rows for the next `write_summary` (one rewrite of summary.parquet serves many).
        Returns their statuses."""
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
            if previous not in (None, pack_id):  # retried in this pack: its curve leaves the other pack's file
                self.replace_curves(previous, [], dropped=[trial_id])
        if taken:
            self.replace_curves(pack_id, taken)
        return {trial_id: new[trial_id].status for trial_id in trial_ids if trial_id in new}

    def replace_curves(self, pack_id: str, records: list[TrialRecord], dropped: Iterable[str] = ()) -> None:
        """The pack's curve file, read back and rewritten with these curves (the driver holds none:
        a pack's curves of long trainings take tens of MiB); rebuilt from the pack's records if
        it cannot be read."""
        try:
            self.results.replace_curves(pack_id, records, dropped)
        except CorruptTable as error:
            self.quarantine(error.path, str(error))
            held = self.results.read_pack(pack_id).records.values()
            self.results.write_curves(pack_id, [record for record in held if self.holder(record.trial_id) == pack_id])

    def status_of(self, trial_id: str) -> Optional[str]:
        counted = self.counted.get(trial_id)
        return counted.status if counted else None

    def fold(self) -> None:
        """The pending rows into the table, each replacing the point's row there if it has one
        (Arrow types a column by all its values: a column of integers and floats is float)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not self.pending:
            return
        new = pa.Table.from_pylist(list(self.pending.values())).select(self.columns)
        if self.table is not None:
            replaced = pc.is_in(self.table["trial_id"], value_set=pa.array(list(self.pending), pa.string()))
            new = pa.concat_tables([self.table.filter(pc.invert(replaced)), new], promote_options="permissive")
        self.table, self.pending = new, {}

    def write_summary(self) -> None:
        """summary.parquet: one row per point that has a record, in the order they were filed."""
        self.fold()
        write_table(self.table if self.table is not None else {column: [] for column in self.columns}, self.results.summary_path)


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
    a moment later loses nothing. Points that finish while the filer is busy are filed together.

    A pack's curve file is rewritten as its points are filed. summary.parquet is rewritten whole,
    which takes ~9 us a row (0.09 s at 10,000 points), so it is rewritten at most once every
    SUMMARY_PACE times its last rewrite's duration (at once while it is small), and at close:
    the summary spends a tenth of the filer's time at most, never a core of a small machine.

        filer.file(pack_id, [trial ids])   # returns at once
        filer.close()                      # files what is left; re-raises the first filing error
    """

    SUMMARY_PACE = 10

    def __init__(self, ledger: Ledger, on_filed: Callable[[str, str], None]):
        """on_filed(trial_id, status) after each point is filed."""
        self.ledger, self.on_filed = ledger, on_filed
        self.pending: queue.SimpleQueue = queue.SimpleQueue()
        self.error: Optional[BaseException] = None
        self.unwritten, self.summary_due = False, 0.0
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
            wait = max(0.0, self.summary_due - time.monotonic()) if self.unwritten else None
            try:
                batch = [self.pending.get(timeout=wait)]
            except queue.Empty:
                batch = []
            while not self.pending.empty():  # what finished while the last batch was filed
                batch.append(self.pending.get())
            closing = None in batch
            if self.error is not None:
                continue
            try:
                for pack_id, trial_ids in (item for item in batch if item is not None):
                    statuses = self.ledger.file(pack_id, trial_ids)
                    self.unwritten = True
                    for trial_id in trial_ids:
                        self.on_filed(trial_id, statuses.get(trial_id, "failed"))
                if self.unwritten and (closing or time.monotonic() >= self.summary_due):
                    started = time.monotonic()
                    self.ledger.write_summary()
                    self.unwritten, self.summary_due = False, time.monotonic() + self.SUMMARY_PACE * (time.monotonic() - started)
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
    tables = ([results.summary_path] if results.summary_path.exists() else []) + results.curve_files()
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
