"""Lanczos eigenvalues against the exact Hessian of a small MLP, in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from tiltsweep.trainers.hessian import hessian_top_eigenvalues
from tiltsweep.trainers.loss import class_weights, dynamical_loss
from tiltsweep.trainers.models import MLP


def small_problem():
    """A width-12 MLP on 60 spiral-like points, 3 classes: 75 parameters; the loss F(t) with A = 10."""
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (60, 2), jnp.float64)
    y = jnp.arange(60) % 3
    model = MLP(12, 1, 3, jnp.float64)
    params = model.init(jax.random.PRNGKey(1), x[:1])["params"]
    gamma = class_weights(250, 3, 10.0, 1000.0, jnp.inf)
    loss = lambda p: dynamical_loss("dynamical_cross_entropy", model.apply({"params": p}, x), y, gamma)
    return loss, params


@pytest.mark.slow
def test_lanczos_matches_the_exact_hessian_to_1e_4(x64):
    loss, params = small_problem()
    flat, unravel = ravel_pytree(params)
    exact = np.linalg.eigvalsh(np.asarray(jax.hessian(lambda v: loss(unravel(v)))(flat)))[::-1][:3]
    assert flat.shape == (75,)
    lanczos = np.asarray(hessian_top_eigenvalues(loss, params, jax.random.PRNGKey(2), order=30, k=3))
    np.testing.assert_allclose(lanczos, exact, rtol=1e-4)
    assert exact[0] > exact[1] > exact[2] > 0


def test_full_order_is_exact_and_the_start_vector_does_not_matter(x64):
    loss, params = small_problem()
    a = hessian_top_eigenvalues(loss, params, jax.random.PRNGKey(3), order=75, k=3)
    b = hessian_top_eigenvalues(loss, params, jax.random.PRNGKey(4), order=200, k=3)  # clamped to 75
    np.testing.assert_allclose(a, b, rtol=1e-8)


@pytest.mark.slow
def test_training_records_the_top_eigenvalues_every_hessian_every_steps():
    from tiltsweep.trainers.training import prepare
    from tiltsweep.trainers.config import TrialConfig
    from tiltsweep.trainers import train

    config = {
        "data": {"name": "spiral", "points_per_class": 30, "classes": 3},
        "model": {"name": "mlp", "width": 8},
        "optimizer": {"name": "sgd", "learning_rate": 1.0},
        "training": {"epochs": 100, "eval_every": 40, "hessian_every": 30, "hessian_top_k": 2, "hessian_order": 40},
        "loss": {"amplitude": 20, "period": 50},
    }
    result = train(config)
    measured = {row["step"]: (row["hessian_eig_1"], row["hessian_eig_2"]) for row in result.history}
    assert sorted(measured) == [0, 30, 40, 60, 80, 90, 100]  # evaluations and Hessian stops
    for step, (first, second) in measured.items():
        if step % 30 == 0:
            assert first >= second > 0
        else:
            assert np.isnan(first) and np.isnan(second)
    # The last measurement (step 90) against the exact Hessian of F(90) at that state.
    run = prepare([TrialConfig.model_validate(config)])
    engine, states = run.engine, run.fresh_states()
    states, _ = engine.train_epochs(states, run.hypers, run.data, 90)
    state = jax.tree.map(lambda leaf: leaf[0], states)
    hyper = jax.tree.map(lambda leaf: leaf[0], run.hypers)
    gamma = class_weights(90, 3, hyper["amplitude"], hyper["period"], hyper["stop_step"])
    loss = lambda p: dynamical_loss("dynamical_cross_entropy", engine.model.apply({"params": p}, run.data["hessian_x"]), run.data["hessian_y"], gamma)
    flat, unravel = ravel_pytree(state.params)
    exact = np.linalg.eigvalsh(np.asarray(jax.hessian(lambda v: loss(unravel(v)))(flat), np.float64))[::-1][:2]
    np.testing.assert_allclose(measured[90], exact, rtol=2e-3)


def test_a_bfloat16_trained_points_hessian_is_computed_in_float32():
    """Mixed precision trains in bfloat16 but measures the Hessian in float32 (in bfloat16 the top
    eigenvalue moved in its third digit between Lanczos starts): no bfloat16 arithmetic enters it,
    and it is the float32 model's, bit for bit, at the same parameters."""
    from conftest import spiral_config
    from tiltsweep.trainers.config import TrialConfig
    from tiltsweep.trainers.training import member, prepare

    def run_in(dtype):
        training = {"epochs": 10, "hessian_every": 10, "hessian_top_k": 2, "hessian_order": 20, "dtype": dtype}
        return prepare([TrialConfig.model_validate(spiral_config(training=training))])

    mixed, plain = run_in("bfloat16"), run_in("float32")
    state, hyper = member(mixed.fresh_states(), 0), member(mixed.hypers, 0)
    assert "bf16" in str(jax.make_jaxpr(mixed.engine._step)(state, hyper, mixed.data["x_train"], mixed.data["y_train"]))
    assert "bf16" not in str(jax.make_jaxpr(mixed.engine._hessian_eigenvalues)(state, hyper, mixed.data))
    eigenvalues = lambda run: np.asarray(jax.jit(run.engine._hessian_eigenvalues)(state, hyper, run.data))
    np.testing.assert_array_equal(eigenvalues(mixed), eigenvalues(plain))
