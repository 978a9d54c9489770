"""Load a results directory for analysis: its summary, its curves and what its axes are, all
through the store (sweep.store): the axes and sub-grids are those the run described there, in the
grid file's order; no grid file is parsed here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Optional

import pandas as pd

from tiltsweep.analysis.reduce import comparable, group_axes
from tiltsweep.sweep.store import ResultsDir, SweepDescription
from tiltsweep.sweep.store.ledger import SUMMARY_COLUMNS, as_json_text


@dataclass
class Results:
    name: str
    directory: str  # the results directory: its path, or its URI on object storage
    summary: pd.DataFrame  # a row per grid cell (amplitude 1's training in every period's cell: grid_rows)
    axes: dict[str, list]  # column -> the grid's values for that axis, in the file's order
    subgrids: list[dict] = field(default_factory=list)  # {"axes", "trial_ids"}; more than one when `grid` is a list
    store: ResultsDir = field(default=None, repr=False)
    # the sweep's combinations of the non-seed axes (tuples, axes in order), when `tiltsweep
    # refine` made it other than the product of its axes; None for a plain grid
    cells: Optional[set] = None

    @property
    def trials(self) -> pd.DataFrame:
        """One row per training: `summary` has a row for every grid cell a training stands for."""
        return self.summary.drop_duplicates("trial_id")

    @cached_property
    def curves(self) -> pd.DataFrame:
        return self.store.tables.curves() if self.store else pd.DataFrame(columns=["trial_id", "step", "epoch"])

    def trace(self, trial_id: str) -> Optional[pd.DataFrame]:
        """The trial's dense replay (`tiltsweep trace`), or None."""
        return self.store.tables.trace(trial_id) if self.store else None

    @property
    def traced(self) -> list[str]:
        """The trials with a trace."""
        return self.store.tables.traced() if self.store else []

    def config_of(self, trial_id: str) -> dict:
        return json.loads(self.summary.loc[self.summary["trial_id"] == trial_id, "config"].iloc[0])


def load_results(directory) -> Results:
    """The summary, the axes and the sub-grids of a results directory (store.NotResults or
    store.OtherLayout where it is not one this tiltsweep reads)."""
    results = ResultsDir(directory).opened()
    description = results.description()
    summary = results.tables.summary(columns=[*SUMMARY_COLUMNS[:2], *description.axes, *SUMMARY_COLUMNS[2:]])
    for column, values in description.axes.items():
        if as_json_text(values) and not any(isinstance(value, (list, dict)) for value in values):
            summary[column] = summary[column].map(lambda text: None if text is None else json.loads(text))  # `[full, 32]`: the grid's own values
    cells = sweep_cells(description) if results.added_points() else None
    return Results(description.name, results.location, grid_rows(summary, description), description.axes, description.subgrids, results, cells)


def sweep_cells(description: SweepDescription) -> set:
    """Every combination of the non-seed axes that a point of the sweep stands for."""
    by = group_axes(description.axes)
    combinations = [axes for trial_id, own in description.points.items() for axes in [own, *({**own, **other} for other in description.shared.get(trial_id, []))]]
    return {tuple(comparable(axes[axis]) for axis in by) for axes in combinations}


def grid_rows(summary: pd.DataFrame, description: SweepDescription) -> pd.DataFrame:
    """The summary's rows of the grid's points, and a copy of a row for each further combination
    of the grid's values its training stands for (amplitude 1 at every period: sweep.grid.identity),
    with that combination's axis values. Records of points no longer in the grid are left out."""
    rows = summary[summary["trial_id"].isin(description.points.keys())]
    if not description.shared:
        return rows.reset_index(drop=True)
    alone = rows[~rows["trial_id"].isin(description.shared.keys())]
    as_stored = lambda axes: {column: comparable(value) for column, value in axes.items()}  # lists as the summary holds them
    standing = [rows[rows["trial_id"] == trial_id].assign(**as_stored({**description.points[trial_id], **axes}))
                for trial_id, shared in description.shared.items() for axes in [{}, *shared]]
    return pd.concat([alone, *standing], ignore_index=True)


def num_classes(config: dict) -> int:
    """C of a trial's config (the dataset's classes, or the chosen subset of them)."""
    data = config["data"]
    if data["name"] == "spiral":
        return int(data["classes"])
    return len(data["classes"]) if data.get("classes") else 10
