"""Load a results directory for analysis: its summary, its curves and what its axes are.

Parquet is read through sweep.store (the one module that does Parquet I/O); the axes come
from the grid.yaml saved in the directory, so a figure's axes are the grid's own values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Optional

import pandas as pd
import yaml

from tiltsweep.sweep.grid import SHORT_NAMES, GridError, axis_column, load_grid
from tiltsweep.sweep.ledger import read_summary
from tiltsweep.sweep.results import ResultsDir
from tiltsweep.sweep.store import read_curves


@dataclass
class SubGrid:
    axes: dict[str, list]  # column -> values of the sub-grid's own axes
    trial_ids: frozenset


@dataclass
class Results:
    name: str
    directory: Path
    summary: pd.DataFrame
    axes: dict[str, list]  # column -> the grid's values for that axis, in the file's order
    curves_dir: Optional[Path] = None
    _curves: Optional[pd.DataFrame] = field(default=None, repr=False)
    subgrids: list[SubGrid] = field(default_factory=list)  # more than one when `grid` is a list

    @property
    def figures_dir(self) -> Path:
        return self.directory / "figures"

    @cached_property
    def curves(self) -> pd.DataFrame:
        if self._curves is not None:
            return self._curves
        return read_curves(self.curves_dir) if self.curves_dir else pd.DataFrame(columns=["trial_id", "step", "epoch"])

    def config_of(self, trial_id: str) -> dict:
        return json.loads(self.summary.set_index("trial_id").loc[trial_id, "config"])


def grid_axes(grid_text: str) -> dict[str, list]:
    """Column name -> values of every axis of a grid file (its text), without validating it:
    the fallback for a grid.yaml that this version no longer accepts."""
    grid = (yaml.safe_load(grid_text) or {}).get("grid") or {}
    axes: dict[str, list] = {}
    for mapping in grid if isinstance(grid, list) else [grid]:
        for key, values in mapping.items():
            column = axis_column(SHORT_NAMES.get(str(key), str(key)))
            axes.setdefault(column, []).extend(v for v in values if v not in axes.get(column, []))
    return axes


def load_results(directory) -> Results:
    """The summary, the axes and the sub-grids of a results directory, its grid.yaml read through
    sweep.grid (the one grid-file parser)."""
    results = ResultsDir(directory)
    if not results.exists():
        raise FileNotFoundError(f"{directory}: not a tiltsweep results directory (no grid.yaml)")
    summary = read_summary(results)
    try:
        spec = load_grid(results.grid_file, base_dir=results.grid_base_dir(), check_data=False)
    except GridError:
        text = results.grid_file.read_text()
        name = (yaml.safe_load(text) or {}).get("name", results.root.name)
        return Results(name, results.root, summary, grid_axes(text), results.curves_dir)
    axes = {axis_column(path): values for path, values in spec.axes.items()}
    subgrids = [SubGrid({axis_column(p): v for p, v in sub.axes.items()}, frozenset(sub.trial_ids)) for sub in spec.subgrids]
    return Results(spec.name, results.root, summary, axes, results.curves_dir, subgrids=subgrids)


def num_classes(config: dict) -> int:
    """C of a trial's config (the dataset's classes, or the chosen subset of them)."""
    data = config["data"]
    if data["name"] == "spiral":
        return int(data["classes"])
    return len(data["classes"]) if data.get("classes") else 10
