"""Where every point of a sweep stands, read from its results directory alone (no Ray, no lock).

- completed / diverged / failed: the point has a record with that status;
- partial: no record yet, but a checkpoint (it was interrupted, or is running now);
- pending: nothing yet.
Points recorded in the directory but no longer in its grid are counted apart, as `outside_grid`.
Unreadable files are reported (`unreadable`): summary.parquet and curve files whose Parquet footer
cannot be read, records that do not decode, and newest checkpoints that fail their checksum
(status reads those in full). The next run moves each to quarantine/ and rebuilds or re-runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tiltsweep.sweep.grid import GridSpec, axis_column
from tiltsweep.sweep.results import CorruptFile, ResultsDir
from tiltsweep.sweep.store import CorruptTable, check_readable, curve_files

CATEGORIES = ("completed", "partial", "pending", "failed", "diverged")


@dataclass
class SweepStatus:
    name: str
    total: int
    trials: dict[str, list[str]] = field(default_factory=lambda: {c: [] for c in CATEGORIES})
    outside_grid: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {category: len(self.trials[category]) for category in CATEGORIES}

    def as_json(self) -> dict:
        return {
            **self.counts(), "total": self.total, "name": self.name, "outside_grid": len(self.outside_grid),
            "unreadable": self.unreadable, "trials": self.trials, "errors": self.errors,
        }


def sweep_status(spec: GridSpec, results: ResultsDir) -> SweepStatus:
    status = SweepStatus(spec.name, len(spec.points))
    grid_ids = {point.trial_id for point in spec.points}
    recorded = {}
    for trial_id in results.record_ids():
        try:
            record = results.read_record(trial_id)
        except CorruptFile as error:
            status.unreadable.append(str(error))
            continue
        except FileNotFoundError:
            continue
        recorded[trial_id] = record["status"]
        if record["status"] == "failed":
            status.errors[trial_id] = record.get("error", "")
    status.unreadable.extend(unreadable_tables(results))
    checkpointed = set(results.checkpointed_ids())
    for trial_id in checkpointed - set(recorded):
        newest = results.checkpoint_files(trial_id)[:1]
        try:
            for path in newest:
                results.read_checkpoint(path)
        except CorruptFile as error:
            status.unreadable.append(str(error))
        except FileNotFoundError:
            pass
    for point in spec.points:
        category = recorded.get(point.trial_id) or ("partial" if point.trial_id in checkpointed else "pending")
        status.trials[category].append(point.trial_id)
    status.outside_grid = sorted(set(recorded) - grid_ids)
    return status


def unreadable_tables(results: ResultsDir) -> list[str]:
    problems = []
    tables = ([results.summary_path] if results.summary_path.exists() else []) + curve_files(results.curves_dir)
    for path in tables:
        try:
            check_readable(path)
        except CorruptTable as error:
            problems.append(str(error))
    return problems


def shorten(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_status(status: SweepStatus, spec: GridSpec, root, listed: int = 8) -> str:
    lines = [f"{status.name} ({root}): {status.total} points"]
    for category in CATEGORIES:
        ids = status.trials[category]
        lines.append(f"  {category:<10}{len(ids):>6}")
        if category != "completed":
            for trial_id in ids[:listed]:
                axes = ", ".join(f"{axis_column(k)}={v}" for k, v in spec.point(trial_id).axes.items())
                error = f": {shorten(status.errors[trial_id])}" if trial_id in status.errors else ""
                lines.append(f"              {trial_id}  {axes}{error}")
            if len(ids) > listed:
                lines.append(f"              ... and {len(ids) - listed} more")
    if status.outside_grid:
        lines.append(f"  {len(status.outside_grid)} recorded points are not in the current grid (kept, not counted)")
    for problem in status.unreadable:
        lines.append(f"  unreadable: {problem} (the next run moves it to quarantine/ and rebuilds it or re-runs its point)")
    return "\n".join(lines)
