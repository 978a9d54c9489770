"""The dynamical loss against DESIGN.md's definition, point by point."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import float32_rtol
from tiltsweep.trainers import oscillation
from tiltsweep.trainers.loss import class_weights, dynamical_loss, emphasized_class

C = 3


def gamma(step, amplitude=10.0, period=100.0, stop=np.inf, shape="triangle"):
    return np.asarray(class_weights(step, C, amplitude, period, stop, shape))


def numpy_dynamical_cross_entropy(logits, labels, gamma_):
    """DESIGN.md's F in float64 NumPy: (1/P) sum_j Gamma_{y_j} (log sum_i exp f_i(x_j) - f_{y_j}(x_j))."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
    top = logits.max(axis=1, keepdims=True)
    per_example = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0] - logits[np.arange(len(labels)), labels]
    return float(np.mean(np.asarray(gamma_, np.float64)[labels] * per_example))


def test_amplitude_one_is_softmax_cross_entropy():
    logits = jax.random.normal(jax.random.PRNGKey(0), (64, C)) * 3
    labels = jax.random.randint(jax.random.PRNGKey(1), (64,), 0, C)
    expected = numpy_dynamical_cross_entropy(logits, labels, np.ones(C))  # an oracle of its own, not the optax the loss calls
    for step in (0, 17, 50, 99, 250):
        weights = class_weights(step, C, 1.0, 100.0, np.inf)
        assert float(dynamical_loss("dynamical_cross_entropy", logits, labels, weights)) == pytest.approx(expected, rel=1e-6)


def test_dynamical_cross_entropy_and_its_gradient_follow_the_definition():
    """F with oscillating weights against NumPy, and its gradient against the closed form
    dF/df_i(x_j) = Gamma_{y_j} (softmax_i(f(x_j)) - [i = y_j]) / P, under jit."""
    logits = jax.random.normal(jax.random.PRNGKey(3), (32, C)) * 2
    labels = jax.random.randint(jax.random.PRNGKey(4), (32,), 0, C)
    weights = class_weights(37, C, 30.0, 100.0, np.inf)
    loss = jax.jit(lambda f: dynamical_loss("dynamical_cross_entropy", f, labels, weights))
    assert float(loss(logits)) == pytest.approx(numpy_dynamical_cross_entropy(logits, labels, weights), rel=1e-6)
    f = np.asarray(logits, np.float64)
    softmax = np.exp(f - f.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    closed = np.asarray(weights, np.float64)[np.asarray(labels)][:, None] * (softmax - np.eye(C)[np.asarray(labels)]) / len(labels)
    np.testing.assert_allclose(np.asarray(jax.grad(loss)(logits)), closed, rtol=1e-5, atol=1e-7)


def test_amplitude_one_mse_is_plain_squared_error():
    logits = jax.random.normal(jax.random.PRNGKey(2), (16, C))
    labels = jnp.arange(16) % C
    expected = jnp.mean(jnp.sum((logits - jax.nn.one_hot(labels, C)) ** 2, axis=-1))
    assert float(dynamical_loss("dynamical_mse", logits, labels, gamma(30, amplitude=1.0))) == pytest.approx(float(expected))


@pytest.mark.parametrize("shape", ["triangle", "cosine"])
def test_weights_sum_to_number_of_classes(shape):
    for step in range(0, 700, 7):
        assert gamma(step, amplitude=37.0, shape=shape).sum() == pytest.approx(C, rel=1e-6)


def test_triangle_peaks_at_half_period_with_the_normalized_amplitude():
    A = 10.0
    peak = gamma(50, amplitude=A)  # tau = T/2: raw weight A
    assert peak[0] == pytest.approx(C * A / (A + C - 1))
    assert peak[1] == peak[2] == pytest.approx(C / (A + C - 1))
    quarter = gamma(25, amplitude=A)  # tau = T/4: raw weight 1 + (A - 1) / 2
    g = 1 + (A - 1) / 2
    assert quarter[0] == pytest.approx(C * g / (g + C - 1))
    np.testing.assert_allclose(gamma(0, amplitude=A), np.ones(C))  # cycle start: all equal
    assert gamma(49, amplitude=A)[0] < peak[0] and gamma(51, amplitude=A)[0] < peak[0]


def test_cosine_shape_is_sin_squared():
    A, T = 5.0, 80.0
    for step in (0, 10, 20, 40, 60):
        g = 1 + (A - 1) * np.sin(np.pi * step / T) ** 2
        assert gamma(step, amplitude=A, period=T, shape="cosine")[0] == pytest.approx(C * g / (g + C - 1), rel=1e-5)


def test_emphasized_class_cycles_round_robin_every_period():
    period = 100.0
    classes = [int(emphasized_class(step, period, C)) for step in (0, 99, 100, 199, 200, 299, 300, 450)]
    assert classes == [0, 0, 1, 1, 2, 2, 0, 1]
    assert int(np.argmax(gamma(150))) == 1 and int(np.argmax(gamma(250))) == 2


def test_period_is_exactly_T_steps():
    # The published notebook resets after T + 1 steps; here step T starts the next cycle at weight 1.
    np.testing.assert_allclose(gamma(100, period=100.0), np.ones(C))
    assert int(emphasized_class(100, 100.0, C)) == 1


def test_oscillations_stop_at_the_stop_step():
    assert gamma(149, stop=150)[1] > 1.0
    for step in (150, 151, 250, 1000):
        np.testing.assert_allclose(gamma(step, stop=150), np.ones(C))


def test_weights_are_traceable_values():
    """A, T and the stop step can be jit arguments: one compiled function serves all of them."""
    weights = jax.jit(lambda t, a, p, s: class_weights(t, C, a, p, s))
    np.testing.assert_allclose(weights(50, 10.0, 100.0, np.inf), gamma(50, 10.0, 100.0))
    np.testing.assert_allclose(weights(25, 3.0, 50.0, np.inf), gamma(25, 3.0, 50.0))
    assert weights._cache_size() == 1


@pytest.mark.parametrize("shape", ["triangle", "cosine"])
def test_numpys_gamma_over_many_steps_is_the_training_steps_gamma(shape):
    """The figures draw Gamma_i(t) with NumPy, for every step at once; the trainer computes it in
    JAX, one step at a time: the same numbers."""
    steps = np.arange(0, 1300)
    drawn = oscillation.class_weights(steps, 3, 30.0, 250.0, 1000, shape)
    assert drawn.shape == (1300, 3) and np.allclose(drawn.sum(axis=1), 3.0)
    trained = np.stack([np.asarray(class_weights(t, 3, 30.0, 250.0, 1000, shape)) for t in steps[::13]])
    np.testing.assert_allclose(drawn[::13], trained, rtol=float32_rtol(cpu=1e-6, accelerator=1e-5))  # NumPy's float64 against float32
    assert (drawn[1000:] == 1.0).all()  # the stop step
