"""A small real sweep with failures of every kind, for the figure and report tests: learning rate
3 diverges; (A=10, lr=0.5) fails on both seeds and (A=1, lr=0.5) on seed 1 (injected faults);
then the grid gains A=30, which has no results yet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tiltsweep.sweep.commands.cli import main
from tiltsweep.sweep.grid import load_grid
from tiltsweep.sweep.store import ResultsDir

GRID = """\
name: figures
data: {name: spiral, points_per_class: 20, classes: 3}
model: {name: mlp, width: 8}
optimizer: {name: sgd, learning_rate: 0.5, batch_size: full}
training: {epochs: 300, eval_every: 50}
loss: {name: dynamical_mse, amplitude: 1, period: 50, stop_oscillation_epoch: 250}
grid:
  amplitude: AMPLITUDES
  optimizer.learning_rate: [0.5, 3.0]
  seed: [0, 1]
resources: {cpu: 1, retries: 0}
"""
LR = "optimizer.learning_rate"


def run_faulty_sweep(root: Path) -> Path:
    """The sweep above, run in `root`; returns its results directory."""
    grid = root / "figures.yaml"
    grid.write_text(GRID.replace("AMPLITUDES", "[1, 10]"))
    faults = [
        {"where": {"amplitude": 10, LR: 0.5}, "epoch": 100, "action": "raise"},
        {"where": {"amplitude": 1, LR: 0.5, "seed": 1}, "epoch": 100, "action": "raise"},
    ]
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("TILTSWEEP_FAULTS", json.dumps(faults))
    try:
        assert main(["run", str(grid), "--out", str(root / "results"), "--no-plot"]) == 3
    finally:
        monkeypatch.undo()
    directory = root / "results" / "figures"
    extended = root / "extended.yaml"
    extended.write_text(GRID.replace("AMPLITUDES", "[1, 10, 30]"))
    ResultsDir(directory).save_grid(extended.read_text(), extended, load_grid(extended).description())  # as if the extension had not run yet
    return directory
