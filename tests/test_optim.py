"""Schedules at known steps, and update rules that match Optax's reference optimizers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import spiral_config
from tiltsweep.trainers.config import TrialConfig
from tiltsweep.trainers.optim import OptimizerKind, hyperparameters, learning_rate_at, update_direction


def trial(optimizer=None, schedule=None, epochs=700):
    overrides = {"training": {"epochs": epochs}}
    if optimizer:
        overrides["optimizer"] = optimizer
    if schedule:
        overrides["schedule"] = schedule
    return TrialConfig.model_validate(spiral_config(**overrides))


def lr_at(cfg, steps, steps_per_epoch=1):
    hyper = hyperparameters(cfg, steps_per_epoch, np.float32)
    kind = OptimizerKind.of(cfg)
    return [float(learning_rate_at(step, hyper, kind, steps_per_epoch)) for step in steps]


def test_constant():
    assert lr_at(trial({"learning_rate": 0.3}), [0, 10, 699]) == pytest.approx([0.3, 0.3, 0.3])


def test_piecewise_linear_as_in_the_supplementary_myrtle5_runs():
    cfg = trial({"learning_rate": 0.02}, {"name": "piecewise_linear", "knots": [[0, 0], [300, 1], [700, 0.1]]})
    # 10 steps per epoch: epoch 150 is step 1500.
    values = lr_at(cfg, [0, 1500, 3000, 5000, 7000, 9000], steps_per_epoch=10)
    assert values == pytest.approx([0.0, 0.01, 0.02, 0.02 - 0.018 / 2, 0.002, 0.002])


def test_cosine_with_warmup():
    cfg = trial({"learning_rate": 0.1}, {"name": "cosine", "warmup_epochs": 100, "final_scale": 0.0}, epochs=700)
    values = lr_at(cfg, [0, 50, 100, 400, 700])
    assert values == pytest.approx([0.0, 0.05, 0.1, 0.05, 0.0], abs=1e-7)


def test_triangular_cycle():
    cfg = trial(schedule={"name": "triangular", "base_lr": 0.1, "max_lr": 1.0, "step_size": 100})
    values = lr_at(cfg, [0, 50, 100, 150, 200, 250, 300])
    assert values == pytest.approx([0.1, 0.55, 1.0, 0.55, 0.1, 0.55, 1.0])


def test_range_test_rises_linearly_over_the_run():
    cfg = trial(schedule={"name": "range_test", "min_lr": 0.001, "max_lr": 1.001}, epochs=100)
    assert lr_at(cfg, [0, 50, 100]) == pytest.approx([0.001, 0.501, 1.001])


def follow(cfg, reference, steps=5):
    """Run our update rule and an optax reference side by side on a quadratic."""
    kind = OptimizerKind.of(cfg)
    hyper = hyperparameters(cfg, 1, np.float32)
    target = jnp.array([1.0, -2.0, 3.0])
    grad = jax.grad(lambda p: jnp.sum((p["w"] - target) ** 2 * jnp.array([1.0, 3.0, 10.0])))
    ours_params = theirs_params = {"w": jnp.zeros(3)}
    ours, theirs = update_direction(kind, hyper), reference
    ours_state, theirs_state = ours.init(ours_params), theirs.init(theirs_params)
    for step in range(steps):
        direction, ours_state = ours.update(grad(ours_params), ours_state, ours_params)
        lr = learning_rate_at(step, hyper, kind, 1)
        ours_params = jax.tree.map(lambda p, u: p - lr * u, ours_params, direction)
        updates, theirs_state = theirs.update(grad(theirs_params), theirs_state, theirs_params)
        theirs_params = optax.apply_updates(theirs_params, updates)
    np.testing.assert_allclose(ours_params["w"], theirs_params["w"], rtol=1e-5)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_and_weight_decay_match_optax(nesterov):
    cfg = trial({"learning_rate": 0.01, "momentum": 0.9, "nesterov": nesterov, "weight_decay": 0.01})
    follow(cfg, optax.chain(optax.add_decayed_weights(0.01), optax.sgd(0.01, momentum=0.9, nesterov=nesterov)))


def test_plain_gradient_descent_matches_optax():
    follow(trial({"learning_rate": 0.02}), optax.sgd(0.02))


def test_adam_matches_optax_adamw():
    cfg = trial({"name": "adam", "learning_rate": 0.05, "weight_decay": 0.001})
    follow(cfg, optax.adamw(0.05, weight_decay=0.001), steps=10)


def test_triangular_as_ratio_and_period_is_the_same_schedule():
    as_rates = trial(schedule={"name": "triangular", "base_lr": 0.1, "max_lr": 0.8, "step_size": 50})
    as_ratio = trial(schedule={"name": "triangular", "base_lr": 0.1, "ratio": 8, "period": 100})
    steps = [0, 25, 50, 75, 100, 130]
    assert lr_at(as_rates, steps) == pytest.approx(lr_at(as_ratio, steps))
    assert lr_at(as_ratio, [0, 50, 100]) == pytest.approx([0.1, 0.8, 0.1])
    resolved = TrialConfig.model_validate(as_ratio.model_dump(mode="json"))  # a resolved config has both forms
    assert resolved == as_ratio
    with pytest.raises(ValueError, match="give max_lr or ratio, not both"):
        trial(schedule={"name": "triangular", "base_lr": 0.1, "ratio": 8, "max_lr": 0.5, "step_size": 50})
