"""`tiltsweep lr-range GRID.yaml`: Smith's learning-rate range test for a grid's setup.

One training run of the grid's first point, in this process (its data on this machine, as a worker
has it: run.worker.with_local_data), with the learning rate rising from --min-lr to --max-lr over
the run (schedule range_test: geometrically when the range spans more than a decade, so that every
decade gets its share of the evaluations, else linearly as in Smith 2017; the grid's loss,
dynamical or not, is kept). It is evaluated on its own schedule, EVALUATIONS times across the range
(within epochs where need be), whatever the grid's eval_every says. Writes the table (step, epoch,
learning_rate, losses, accuracies) and the figure lr_range.png (a log-scaled rate axis over more
than a decade, the suggested base and max rates marked: analysis.reduce.suggest_learning_rates)
into the results directory OUT/<name>, where the store keeps them (lr-range/range.parquet,
figures/), and returns them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd

from tiltsweep.sweep.errors import Refused
from tiltsweep.sweep.grid import load_grid
from tiltsweep.sweep.store.location import results_directory

COLUMNS = ["step", "epoch", "learning_rate", "train_loss", "train_accuracy", "val_loss", "val_accuracy"]


EVALUATIONS = 200
DECADE = 10.0


def spacing(min_lr: float, max_lr: float) -> str:
    return "geometric" if max_lr / min_lr > DECADE else "linear"


def range_test_config(base, min_lr: float, max_lr: float, epochs: Optional[int]):
    from pydantic import ValidationError

    from tiltsweep.trainers import TrialConfig

    raw = base.model_dump(mode="json")
    raw["schedule"] = {"name": "range_test", "min_lr": min_lr, "max_lr": max_lr, "spacing": spacing(min_lr, max_lr)}
    raw["training"]["epochs"] = epochs or raw["training"]["epochs"]
    raw["training"]["checkpoint_every"] = None
    raw["training"]["hessian_every"] = None
    if raw["loss"].get("stop_oscillation_epoch") and raw["loss"]["stop_oscillation_epoch"] > raw["training"]["epochs"]:
        raw["loss"]["stop_oscillation_epoch"] = None
    try:
        return TrialConfig.model_validate(raw)
    except ValidationError as error:
        raise Refused(f"range test: {error.errors()[0]['loc']}: {error.errors()[0]['msg']}") from None


def run_range_test(grid: Path, out: Path, min_lr: float, max_lr: float, epochs: Optional[int] = None, evaluations: int = EVALUATIONS):
    """(frame, suggestion, parquet path, figure path)."""
    from tiltsweep.analysis import figures
    from tiltsweep.analysis.reduce import suggest_learning_rates
    from tiltsweep.sweep.run.worker import with_local_data
    from tiltsweep.trainers import train_evaluated

    if not 0 < min_lr < max_lr:
        raise Refused(f"--min-lr {min_lr} and --max-lr {max_lr}: need 0 < min-lr < max-lr")
    if evaluations < 3:
        raise Refused(f"--evaluations {evaluations}: need at least 3")
    spec = load_grid(grid)
    results = results_directory(out, spec.name, spec.source)  # refused here, not after the training
    config = range_test_config(spec.points[0].config, min_lr, max_lr, epochs)
    result = train_evaluated(with_local_data(config), evaluations)
    frame = pd.DataFrame(result.history)[COLUMNS]
    if len(frame) < 3:
        raise Refused(f"range test: only {len(frame)} evaluations before the loss diverged; lower --max-lr or evaluate more often (--evaluations)")
    suggestion = suggest_learning_rates(frame["learning_rate"], frame["val_accuracy"])
    table = results.tables.write_lr_range(frame)
    title = f"{spec.name}: learning-rate range test ({result.status} after {result.steps} steps)"
    drawn = figures.lr_range(frame, suggestion, title, log_rate=config.schedule.spacing == "geometric")
    figure = results.write_figure("lr_range.png", figures.save(drawn, "png"))
    return frame, suggestion, table, figure
