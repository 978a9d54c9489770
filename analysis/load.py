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

from sweep.grid import SHORT_NAMES, axis_column
from sweep.ledger import read_summary
from sweep.results import ResultsDir
from sweep.store import read_curves


@dataclass
class Results:
    name: str
    directory: Path
    summary: pd.DataFrame
    axes: dict[str, list]  # column -> the grid's values for that axis, in the file's order
    curves_dir: Optional[Path] = None
    _curves: Optional[pd.DataFrame] = field(default=None, repr=False)

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
    """Column name -> values of every axis of a grid file (its text), without validating it."""
    grid = (yaml.safe_load(grid_text) or {}).get("grid") or {}
    return {axis_column(SHORT_NAMES.get(str(key), str(key))): values for key, values in grid.items()}


def load_results(directory) -> Results:
    results = ResultsDir(directory)
    if not results.exists():
        raise FileNotFoundError(f"{directory}: not a tiltsweep results directory (no grid.yaml)")
    text = results.grid_file.read_text()
    name = (yaml.safe_load(text) or {}).get("name", results.root.name)
    return Results(name, results.root, read_summary(results), grid_axes(text), results.curves_dir)


def num_classes(config: dict) -> int:
    """C of a trial's config (the dataset's classes, or the chosen subset of them)."""
    data = config["data"]
    if data["name"] == "spiral":
        return int(data["classes"])
    return len(data["classes"]) if data.get("classes") else 10
