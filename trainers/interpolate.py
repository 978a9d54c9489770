"""Loss and accuracy along the straight line between two trained models (Smith & Topin 2017):

    theta(alpha) = (1 - alpha) theta_1 + alpha theta_2

for every parameter and batch-norm statistic, evaluated on both splits. A bump in the loss
between alpha = 0 and 1 says the two solutions sit in different minima. At alpha = 0 and 1 the
models are theta_1 and theta_2 exactly.
"""

from __future__ import annotations

import jax

from tiltsweep.trainers.config import TrialConfig
from tiltsweep.trainers.training import prepare

METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


def mix(a, b, alpha: float):
    return jax.tree.map(lambda x, y: (1.0 - alpha) * x + alpha * y, a, b)


def interpolate(config: TrialConfig, state_a: dict, state_b: dict, alphas) -> list[dict]:
    """One row per alpha: {"alpha", train_loss, train_accuracy, val_loss, val_accuracy}, the
    losses unweighted. state_a, state_b: flax state dicts of two train states of `config`'s
    model and data (e.g. Checkpoint.state)."""
    run = prepare([config])
    a, b = run.restore([state_a]), run.restore([state_b])  # groups of one
    rows = []
    for alpha in alphas:
        state = a.replace(params=mix(a.params, b.params, alpha), batch_stats=mix(a.batch_stats, b.batch_stats, alpha))
        row = run.engine.rows(run.engine.evaluate(state, run.hypers, run.data))[1][0]
        rows.append({"alpha": float(alpha), **{name: row[name] for name in METRICS}})
    return rows
