"""Load a results directory for analysis: its summary, its curves and what its axes are, all
through the results layer (sweep.results): the axes and sub-grids are those the run wrote into
sweep.json, in the grid file's order; no grid file is parsed here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from tiltsweep.sweep.ledger import SUMMARY_COLUMNS, description_of
from tiltsweep.sweep.results import ResultsDir


@dataclass
class Results:
    name: str
    directory: Path
    summary: pd.DataFrame
    axes: dict[str, list]  # column -> the grid's values for that axis, in the file's order
    subgrids: list[dict] = field(default_factory=list)  # {"axes", "trial_ids"}; more than one when `grid` is a list
    store: ResultsDir = field(default=None, repr=False)

    @property
    def figures_dir(self) -> Path:
        return self.directory / "figures"

    @cached_property
    def curves(self) -> pd.DataFrame:
        return self.store.read_curves() if self.store else pd.DataFrame(columns=["trial_id", "step", "epoch"])

    def config_of(self, trial_id: str) -> dict:
        return json.loads(self.summary.set_index("trial_id").loc[trial_id, "config"])


def load_results(directory) -> Results:
    """The summary, the axes and the sub-grids of a results directory."""
    results = ResultsDir(directory)
    if not results.exists():
        raise FileNotFoundError(f"{directory}: not a tiltsweep results directory (no grid.yaml)")
    description = description_of(results)
    summary = results.read_summary(columns=[*SUMMARY_COLUMNS[:2], *description.axes, *SUMMARY_COLUMNS[2:]])
    return Results(description.name, results.root, summary, description.axes, description.subgrids, results)


def num_classes(config: dict) -> int:
    """C of a trial's config (the dataset's classes, or the chosen subset of them)."""
    data = config["data"]
    if data["name"] == "spiral":
        return int(data["classes"])
    return len(data["classes"]) if data.get("classes") else 10
