"""Each model maps a batch to (batch, classes) logits; the standard WRN-28-10 has its known size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import spiral_config
from tiltsweep.trainers.config import MLPModel, Myrtle5Model, TrialConfig, WideResNetModel
from tiltsweep.trainers.models import MLP, build_model
from tiltsweep.trainers.training import prepare


def logits_shape(cfg, input_shape, classes=3):
    model = build_model(cfg, classes)
    x = jnp.zeros((4, *input_shape))
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    return model.apply(variables, x, train=False).shape, variables


def count(tree):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def test_mlp_one_and_several_hidden_layers():
    shape, variables = logits_shape(MLPModel(name="mlp", width=20), (2,))
    assert shape == (4, 3)
    assert count(variables["params"]) == 2 * 20 + 20 + 20 * 3 + 3
    shape, variables = logits_shape(MLPModel(name="mlp", width=16, depth=3), (64,), classes=10)
    assert shape == (4, 10) and len(variables["params"]) == 4


@pytest.mark.parametrize("layout", ["feature_major", "elementwise"])
@pytest.mark.parametrize("depth", [1, 2])
def test_every_mlp_layout_is_the_plain_flax_mlp(depth, layout):
    """A layout changes how the MLP computes, not what: the same parameters (names, shapes,
    initial values: checkpoints and seeds carry over), the same logits and gradients up to
    rounding, as nn.Dense's own (batch-major) layout."""
    plain, fast = MLP(30, depth, 3, layout="batch_major"), MLP(30, depth, 3, layout=layout)
    x = jax.random.normal(jax.random.PRNGKey(1), (50, 2))
    params = plain.init(jax.random.PRNGKey(0), x)["params"]
    assert jax.tree.all(jax.tree.map(lambda a, b: a.shape == b.shape and bool(jnp.all(a == b)),
                                     params, fast.init(jax.random.PRNGKey(0), x)["params"]))
    np.testing.assert_allclose(fast.apply({"params": params}, x), plain.apply({"params": params}, x), rtol=1e-5, atol=1e-6)
    loss = lambda model: jax.grad(lambda p: jnp.sum(jnp.sin(model.apply({"params": p}, x))))(params)
    for a, b in zip(jax.tree.leaves(loss(fast)), jax.tree.leaves(loss(plain))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layout", ["feature_major", "elementwise"])
def test_in_mixed_precision_every_mlp_layout_rounds_no_worse_than_the_plain_one(layout):
    """In bfloat16 with float32 parameters a layout's logits are as close to the float32 model's
    as the plain Flax MLP's (a product of matrices rounds its sums, not each product: rounding
    each product in bfloat16 came 1.5x as far here)."""
    x = jax.random.normal(jax.random.PRNGKey(1), (300, 2))
    exact = MLP(20, 2, 3, layout="batch_major")
    params = exact.init(jax.random.PRNGKey(0), x)["params"]
    error = lambda layout: float(jnp.max(jnp.abs(MLP(20, 2, 3, jnp.bfloat16, layout, param_dtype=jnp.float32).apply({"params": params}, x)
                                                 - exact.apply({"params": params}, x))))
    assert 0 < error(layout) <= 1.25 * error("batch_major")


def test_an_unknown_mlp_layout_is_refused():
    with pytest.raises(ValueError, match="unknown MLP layout 'elementwize'"):
        MLP(8, 1, 3, layout="elementwize").init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))


@pytest.mark.parametrize("dtype, depth, layout", [
    (jnp.float32, 1, "feature_major"), (jnp.float32, 3, "feature_major"), (jnp.bfloat16, 2, "feature_major"),
    (jnp.float64, 1, "feature_major"), (jnp.float64, 2, "batch_major"),
])
def test_the_automatic_mlp_layout_follows_dtype_and_depth_alone(dtype, depth, layout):
    """Feature-major except float64 with hidden-to-hidden layers, whatever the backend (the layout
    measured on an accelerator; benchmarks/accelerator.py compares them all); a layout the config
    names is the one used."""
    assert build_model(MLPModel(name="mlp", width=8, depth=depth), 3, dtype).layout == layout
    assert build_model(MLPModel(name="mlp", width=8, depth=depth, layout="elementwise"), 3, dtype).layout == "elementwise"


def initial_params(seed: int, init: str, dtype: str = "float32", depth: int = 1):
    cfg = spiral_config(model={"name": "mlp", "width": 20, "depth": depth, "init": init}, training={"epochs": 1, "dtype": dtype}, seed=seed)
    run = prepare([TrialConfig.model_validate(cfg)])
    return run, jax.tree.map(lambda leaf: leaf[0], run.fresh_states().params)


@pytest.mark.parametrize("depth", [1, 2])
def test_stax_init_is_the_published_notebooks_start(x64, depth):
    """Seed s starts where the notebook's seed s starts: the parameters that
    stax.serial(Dense(20), Relu, ..., Dense(3)) draws from PRNGKey(s), in float64, bit for bit,
    computing the same logits."""
    from jax.example_libraries import stax

    run, params = initial_params(7, "stax", "float64", depth)
    init_fun, apply_fun = stax.serial(*[layer for _ in range(depth) for layer in (stax.Dense(20), stax.Relu)], stax.Dense(3))
    _, expected = init_fun(jax.random.PRNGKey(7), (-1, 2))
    dense = [layer for layer in expected if layer]
    assert len(params) == len(dense) == depth + 1
    for i, (kernel, bias) in enumerate(dense):
        assert params[f"Dense_{i}"]["kernel"].dtype == jnp.float64
        assert bool(jnp.all(params[f"Dense_{i}"]["kernel"] == kernel)) and bool(jnp.all(params[f"Dense_{i}"]["bias"] == bias))
    assert 0.005 < float(jnp.std(dense[0][1])) < 0.02  # the biases are not zero: normal, std 0.01
    x = run.data["x_train"]
    logits, _ = run.engine._apply(params, {}, x, train=False)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(apply_fun(expected, x)), rtol=1e-12, atol=1e-12)


def test_the_kernel_inits_are_flaxs_and_glorots():
    _, lecun = initial_params(3, "lecun_normal")
    _, glorot = initial_params(3, "glorot_normal")
    kernel = lambda params: np.asarray(params["Dense_1"]["kernel"])  # 20 -> 3: the two scales differ most
    assert not np.any(np.asarray(glorot["Dense_1"]["bias"])) and not np.any(np.asarray(lecun["Dense_1"]["bias"]))
    # Flax's truncated normals, variance 1 / fan_in (lecun) and 2 / (fan_in + fan_out) (glorot):
    # the same draws, so the kernels differ exactly by the ratio of their scales.
    np.testing.assert_allclose(kernel(glorot), kernel(lecun) * np.sqrt(2 * 20 / (20 + 3)), rtol=1e-6)


def test_myrtle5_on_cifar_images():
    shape, variables = logits_shape(Myrtle5Model(name="myrtle5", channels=8), (32, 32, 3))
    assert shape == (4, 3)
    assert len([k for k in variables["params"] if k.startswith("Conv")]) == 4


@pytest.mark.slow
def test_small_wide_resnet_runs_and_has_batch_norm_state():
    model = build_model(WideResNetModel(name="wide_resnet", depth=10, widen_factor=1), 10)
    x = jnp.ones((2, 32, 32, 3))
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    assert "batch_stats" in variables
    logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert logits.shape == (2, 10) and "batch_stats" in updates


def test_wrn_28_10_is_the_standard_36_million_parameter_network():
    model = build_model(WideResNetModel(name="wide_resnet"), 10)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False))
    assert 36.4e6 < count(shapes["params"]) < 36.6e6
