"""`tiltsweep trace DIR TRIAL [--every N]`: one finished point replayed densely.

The point's recorded config trains again from its seed in this process, through the same
trainer and compiled programs as in the sweep (trainers.train), so that on the same machine it
takes the same steps bit for bit; only its evaluations are denser: every N optimizer steps.
The rows go to the point's trace in the store (DIR/traces/<trial>.parquet) with the curves' columns (and the top Hessian
eigenvalues at every row when the grid tracks them); the trajectory and Hessian figures draw a
trace where one exists.

N defaults to what a figure needs: about ROWS rows over the run and at least PER_PERIOD a
period, and a divisor of the grid's eval_every, so that every recorded evaluation is a row of
the trace too. The replay checks itself against those rows and says whether it matches (a point
trained on another CPU, or vmapped with others on an accelerator, takes other last bits, and a
chaotic training then other steps). Minibatch training is evaluated between epochs only: N is a
multiple of an epoch's steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import pandas as pd

from tiltsweep.sweep.errors import Refused
from tiltsweep.sweep.store import ResultsDir

ROWS = 2000
PER_PERIOD = 50


@dataclass
class Trace:
    frame: pd.DataFrame
    path: str  # where it went
    every: int  # steps between rows
    checked: int  # recorded evaluations compared
    differing: int  # of those, rows that differ in any metric


def find_trial(results: ResultsDir, text: str) -> str:
    """The trial id that `text` names: the whole id or a prefix of exactly one recorded id."""
    recorded = results.records.outcomes(on_corrupt=lambda error: None)
    if text in recorded:
        return text
    matches = [trial_id for trial_id in recorded if trial_id.startswith(text)]
    if len(matches) != 1:
        what = "no recorded trial" if not matches else f"{len(matches)} recorded trials"
        raise Refused(f"{results}: {what} whose id starts with {text!r} (`tiltsweep status {results}` lists them)")
    return matches[0]


def default_every(config, steps_per_epoch: int) -> int:
    """Epochs between rows: ~ROWS over the run, PER_PERIOD a period, and a divisor of eval_every."""
    training, loss = config.training, config.loss
    wanted = training.epochs * steps_per_epoch / ROWS
    if loss.amplitude > 1:
        wanted = min(wanted, loss.period_in_steps(steps_per_epoch) / PER_PERIOD)
    most = max(1, int(wanted // steps_per_epoch))
    return max(d for d in range(1, most + 1) if training.eval_every % d == 0)


def trace_point(directory, trial: str, every: Optional[int] = None) -> Trace:
    """Replay the point and write its trace; `every` in optimizer steps (default: default_every)."""
    from tiltsweep.sweep.run.worker import with_local_data
    from tiltsweep.trainers import TrialConfig, train
    from tiltsweep.trainers.training import prepare

    results = ResultsDir(directory)
    trial_id = find_trial(results, trial)
    recorded = results.records.of(trial_id)
    if recorded is None or not recorded[1].final:
        raise Refused(f"{results}: trial {trial_id} has not finished (only finished points are traced)")
    record = recorded[1]
    config = with_local_data(TrialConfig.model_validate(record.config))
    steps_per_epoch = prepare([config]).steps_per_epoch
    if every is None:
        epochs_between = default_every(config, steps_per_epoch)
    elif every <= 0 or every % steps_per_epoch:
        raise Refused(f"--every {every}: must be a positive multiple of an epoch's {steps_per_epoch} steps "
                      f"(minibatch training is evaluated between epochs)")
    else:
        epochs_between = every // steps_per_epoch
    dense = config.training.model_copy(update={"eval_every": epochs_between, "keep_final_state": False})
    if config.training.hessian_every:
        dense = dense.model_copy(update={"hessian_every": epochs_between * steps_per_epoch})
    result = train(config.model_copy(update={"training": dense}))
    frame = pd.DataFrame(result.history)
    frame.insert(0, "trial_id", trial_id)
    path = results.tables.write_trace(trial_id, frame)
    checked, differing = compare(frame, pd.DataFrame(record.history))
    return Trace(frame, path, epochs_between * steps_per_epoch, checked, differing)


def compare(trace: pd.DataFrame, history: pd.DataFrame) -> tuple[int, int]:
    """(recorded evaluations found in the trace, how many of them differ in any shared metric)."""
    if history.empty:
        return 0, 0
    joined = history.merge(trace, on="step", suffixes=("", "__trace"))
    metrics = [c for c in history.columns if c not in ("step", "epoch") and f"{c}__trace" in joined]
    nan = lambda value: isinstance(value, float) and math.isnan(value)

    def same(metric: str, recorded, traced) -> bool:
        if metric.startswith("hessian_eig_") and nan(recorded):
            return True  # not measured at this step in the sweep; the trace measures it at every row
        return recorded == traced or (nan(recorded) and nan(traced))

    differing = sum(1 for _, row in joined.iterrows() if not all(same(m, row[m], row[f"{m}__trace"]) for m in metrics))
    return len(joined), differing
