"""Filing trial records into summary.parquet and curves.parquet (the driver's job).

summary.parquet has one row per trial record: `trial_id`, `status`, one column per swept axis
(named by its path, or `amplitude`, `period`, `seed`; typed as the config types it), the final
`train_accuracy`, `val_accuracy`, `train_loss`, `val_loss`, `best_val_accuracy`, `steps`,
`epochs`, `wall_seconds`, `resumed_from_epoch`, `attempts`, `code_version`, `error`, `finished_at`
and the full `config` as JSON.
The rows are a function of the records, so the table can always be rebuilt from them: an
unreadable summary or curve file is moved to quarantine and written again.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Optional

import pandas as pd

from tiltsweep.sweep.atomic import remove_stale_asides
from tiltsweep.sweep.results import CorruptFile, ResultsDir
from tiltsweep.sweep.store import CorruptTable, check_readable, curve_path, read_table, write_curve, write_table

FINAL_METRICS = ("train_accuracy", "val_accuracy", "train_loss", "val_loss")
FINAL_STATUSES = ("completed", "diverged")  # never run again; `failed` is retried by the next run
SUMMARY_COLUMNS = (
    "trial_id", "status", *FINAL_METRICS, "best_val_accuracy", "steps", "epochs", "wall_seconds",
    "resumed_from_epoch", "attempts", "code_version", "error", "finished_at", "config",
)


PLOTTABLE_COLUMNS = (*FINAL_METRICS, "best_val_accuracy", "steps", "wall_seconds")


def is_final(record: Optional[dict]) -> bool:
    """A record that ends its point for good (no record: the point is still to do)."""
    return record is not None and record["status"] in FINAL_STATUSES


def config_value(config: dict, path: str) -> Any:
    node: Any = config
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return json.dumps(node) if isinstance(node, (list, dict)) else node


def summary_row(record: dict, axes: dict[str, str]) -> dict:
    final = record["history"][-1] if record["history"] else {}
    history_val = [row["val_accuracy"] for row in record["history"] if math.isfinite(row.get("val_accuracy", math.nan))]
    row = {"trial_id": record["trial_id"], "status": record["status"]}
    row.update({column: config_value(record["config"], path) for column, path in axes.items()})
    row.update({name: float(final.get(name, math.nan)) for name in FINAL_METRICS})
    row["best_val_accuracy"] = max(history_val) if history_val else math.nan
    for name in ("steps", "epochs", "resumed_from_epoch", "attempts"):
        row[name] = int(record.get(name) or 0)
    row["wall_seconds"] = float(record.get("wall_seconds") or 0.0)
    for name in ("code_version", "error", "finished_at"):
        row[name] = str(record.get(name) or "")
    row["config"] = json.dumps(record["config"], sort_keys=True)
    return row


class Ledger:
    """The driver's view of the records; files each finished trial into the tables."""

    def __init__(self, results: ResultsDir, axes: dict[str, str], on_problem: Callable[[str], None] = lambda message: None):
        """axes: summary column name -> config path of every swept axis."""
        self.results, self.axes, self.on_problem = results, dict(axes), on_problem
        self.rows: dict[str, dict] = {}

    def sync(self) -> None:
        """Rebuild both tables from the records, quarantining whatever cannot be read. Runs while
        no trial writes (before and after a run), so half-written aside files are stale."""
        remove_stale_asides(self.results.root)
        self.rows = {}
        for trial_id in self.results.record_ids():
            record = self.read(trial_id)
            if record is not None:
                self.rows[trial_id] = summary_row(record, self.axes)
                self.ensure_curve(record)
        if self.results.summary_path.exists():
            try:
                check_readable(self.results.summary_path)
            except CorruptTable as error:
                self.quarantine(error.path, str(error))
        self.write_summary()

    def read(self, trial_id: str) -> Optional[dict]:
        try:
            return self.results.read_record(trial_id)
        except FileNotFoundError:
            return None
        except CorruptFile as error:
            self.quarantine(error.path, error.reason)
            return None

    def quarantine(self, path, reason: str) -> None:
        moved = self.results.quarantine(path, reason)
        self.on_problem(f"moved unreadable {path} to {moved} ({reason})")

    def ensure_curve(self, record: dict) -> None:
        path = curve_path(self.results.curves_dir, record["trial_id"])
        if path.exists():
            try:
                check_readable(path)
                return
            except CorruptTable as error:
                self.quarantine(path, str(error))
        if record["history"]:
            write_curve(self.results.curves_dir, record["trial_id"], record["history"])

    def file(self, trial_id: str) -> Optional[dict]:
        """File one newly written record: its curve, and its row for the next `write_summary`
        (one rewrite of summary.parquet serves many records). Returns the record."""
        record = self.read(trial_id)
        if record is None:
            return None
        if record["history"]:
            write_curve(self.results.curves_dir, trial_id, record["history"])
        self.rows[trial_id] = summary_row(record, self.axes)
        return record

    def status_of(self, trial_id: str) -> Optional[str]:
        row = self.rows.get(trial_id)
        return row["status"] if row else None

    def write_summary(self) -> None:
        rows = list(self.rows.values())
        columns = ["trial_id", "status", *self.axes, *SUMMARY_COLUMNS[2:]]
        write_table(pd.DataFrame(rows, columns=columns), self.results.summary_path)


def read_summary(results: ResultsDir) -> pd.DataFrame:
    """summary.parquet as written (empty, with its columns, before the first trial is filed)."""
    if not results.summary_path.exists():
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    return read_table(results.summary_path)
