"""Loss and accuracy along the straight line between two trained models (Smith & Topin 2017):

    theta(alpha) = (1 - alpha) theta_1 + alpha theta_2

for every parameter and batch-norm statistic, evaluated on both splits. A bump in the loss
between alpha = 0 and 1 says the two solutions sit in different minima. At alpha = 0 and 1 the
models are theta_1 and theta_2 exactly.
"""

from __future__ import annotations

import flax.serialization
import jax

from trainers.config import TrialConfig
from trainers.train import member, prepare

METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


def mix(a, b, alpha: float):
    return jax.tree.map(lambda x, y: (1.0 - alpha) * x + alpha * y, a, b)


def interpolate(config: TrialConfig, state_a: dict, state_b: dict, alphas) -> list[dict]:
    """One row per alpha: {"alpha", train_loss, train_accuracy, val_loss, val_accuracy}, the
    losses unweighted. state_a, state_b: flax state dicts of two train states of `config`'s
    model and data (e.g. Checkpoint.state)."""
    run = prepare([config])
    template = member(jax.device_get(run.fresh_states()), 0)
    a = flax.serialization.from_state_dict(template, state_a)
    b = flax.serialization.from_state_dict(template, state_b)
    rows = []
    for alpha in alphas:
        state = a.replace(params=mix(a.params, b.params, alpha), batch_stats=mix(a.batch_stats, b.batch_stats, alpha))
        grouped = jax.tree.map(lambda leaf: leaf[None], state)
        row = run.rows(*jax.device_get((grouped.step, run.engine.evaluate(grouped, run.hypers, run.data))))[0]
        rows.append({"alpha": float(alpha), **{name: row[name] for name in METRICS}})
    return rows
