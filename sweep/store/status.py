"""Where every point of a sweep stands, from its results directory alone: safe to ask at any time,
also while a run writes (it only reads files; of a record file, the header alone on object storage,
the whole file, checked against its checksum, on a disk).

Categories: completed / diverged / failed (the point's record says so); partial (no record yet,
but a checkpoint: interrupted, or running now); pending (nothing yet). Points recorded but no
longer in the sweep are counted apart (`outside_grid`); unreadable files are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tiltsweep.sweep.store.directory import ResultsDir
from tiltsweep.sweep.store.records import CorruptFile

CATEGORIES = ("completed", "partial", "pending", "failed", "diverged")


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
    description = results.description()
    status = SweepStatus(description.name, len(description.points), points=description.points)
    recorded = results.records.outcomes(on_corrupt=lambda error: status.unreadable.append(str(error)))
    status.errors = {trial_id: record.error for trial_id, record in recorded.items() if record.status == "failed"}
    status.unreadable.extend(unreadable_tables(results))
    checkpointed = set(results.checkpoints.trials())
    # On object storage a checkpoint is not downloaded to be checked (a WRN's is hundreds of MB):
    # the worker that resumes from it verifies it, and quarantines it if it is damaged.
    for trial_id in (checkpointed - set(recorded)) if results.files.on_disk else ():
        try:
            newest = results.checkpoints.newest(trial_id)
            if newest:
                results.checkpoints.read(newest)
        except CorruptFile as error:
            status.unreadable.append(str(error))
        except FileNotFoundError:
            pass
    for trial_id in description.points:
        record = recorded.get(trial_id)
        category = record.status if record else ("partial" if trial_id in checkpointed else "pending")
        status.trials[category].append(trial_id)
    status.outside_grid = sorted(set(recorded) - set(description.points))
    return status


def unreadable_tables(results: ResultsDir) -> list[str]:
    return [str(error) for error in results.tables.unreadable([*results.tables.summary_files(), *results.tables.curve_files()])]
