"""The training loop: resume, divergence, one compilation for many grid points, the stop epoch."""

import math

import jax
import numpy as np
import pytest

from conftest import spiral_config
from tiltsweep.trainers import Checkpoint, compilation_counts, train, train_group, training_loop_compilations
from tiltsweep.trainers.config import TrialConfig
from tiltsweep.trainers.training import padded_size, prepare


def train_with_interruption(config, stop_after_checkpoint: int):
    """Train, 'kill' the run at its n-th checkpoint, and resume from that checkpoint's bytes."""
    saved = []
    train(config, on_checkpoint=lambda ckpt: saved.append(ckpt.to_bytes()))
    resumed = train(config, checkpoint=Checkpoint.from_bytes(saved[stop_after_checkpoint]))
    return resumed, len(saved)


def assert_same_history(a, b):
    assert [row["step"] for row in a.history] == [row["step"] for row in b.history]
    for row_a, row_b in zip(a.history, b.history):
        assert row_a.keys() == row_b.keys()
        for name in row_a:  # bitwise equal; NaN (no F(t - 1) at step 0) equals NaN
            assert row_a[name] == row_b[name] or (math.isnan(row_a[name]) and math.isnan(row_b[name])), name


@pytest.mark.parametrize(
    "config",
    [
        spiral_config(training={"epochs": 600, "eval_every": 100, "checkpoint_every": 250}),
        {
            "data": {"name": "digits"},
            "model": {"name": "mlp", "width": 32},
            "optimizer": {"name": "sgd", "learning_rate": 0.05, "batch_size": 64, "momentum": 0.9, "nesterov": True},
            "schedule": {"name": "cosine", "warmup_epochs": 1},
            "training": {"epochs": 6, "eval_every": 2, "checkpoint_every": 3},
            "loss": {"amplitude": 5, "period": 2, "period_unit": "epochs"},
            "seed": 3,
        },
    ],
    ids=["spiral-full-batch", "digits-minibatch-nesterov"],
)
def test_resumed_run_equals_uninterrupted_run(config):
    uninterrupted = train(config)
    resumed, checkpoints = train_with_interruption(config, stop_after_checkpoint=0)
    assert checkpoints >= 1
    assert resumed.status == uninterrupted.status == "completed"
    assert_same_history(resumed, uninterrupted)


@pytest.mark.slow
def test_resume_with_batch_norm_augmentation_and_adam(cifar_dir):
    config = {
        "data": {"name": "cifar10", "path": str(cifar_dir), "classes": [0, 1, 2], "train_size": 48, "augment": True},
        "model": {"name": "wide_resnet", "depth": 10, "widen_factor": 1},
        "optimizer": {"name": "adam", "learning_rate": 0.001, "batch_size": 16, "weight_decay": 1e-4},
        "training": {"epochs": 4, "eval_every": 1, "checkpoint_every": 2},
        "loss": {"amplitude": 3, "period": 2},
    }
    uninterrupted = train(config)
    resumed, _ = train_with_interruption(config, stop_after_checkpoint=0)
    assert_same_history(resumed, uninterrupted)
    assert resumed.steps == 4 * 3


def test_myrtle5_trains_on_a_cifar_subset(cifar_dir):
    config = {
        "data": {"name": "cifar10", "path": str(cifar_dir), "classes": [0, 1, 2], "train_size": 60},
        "model": {"name": "myrtle5", "channels": 8},
        "optimizer": {"name": "sgd", "learning_rate": 0.02, "batch_size": 20, "momentum": 0.9, "nesterov": True},
        "schedule": {"name": "piecewise_linear", "knots": [[0, 0], [3, 1], [7, 0.1]]},
        "training": {"epochs": 7, "eval_every": 7},
        "loss": {"amplitude": 50, "period": 1, "period_unit": "epochs", "stop_oscillation_epoch": 6},
    }
    result = train(config)
    assert result.status == "completed" and result.steps == 7 * 3
    assert result.final["learning_rate"] == pytest.approx(0.002)
    assert result.final["amplitude"] == 1.0


def test_divergence_is_reported_not_raised():
    config = spiral_config(
        optimizer={"learning_rate": 2.0},
        loss={"name": "dynamical_mse", "amplitude": 50, "period": 50},
        training={"epochs": 600, "eval_every": 10},
    )
    result = train(config)
    assert result.status == "diverged"
    assert "non-finite" in result.message and 10 < result.steps < 600
    assert [row["step"] for row in result.history] == list(range(0, result.steps, 10))
    assert all(math.isfinite(row["train_loss"]) for row in result.history)
    assert result.final is result.history[-1]


def test_eval_rows_and_callback():
    rows = []
    result = train(spiral_config(), on_eval=rows.append)
    assert rows == result.history
    assert [row["epoch"] for row in rows] == [0, 100, 200, 300, 400, 500, 600]
    expected = {
        "step", "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "weighted_loss",
        "weighted_loss_change", "learning_rate", "amplitude", "emphasized_class", "emphasized_weight",
    }
    assert set(rows[0]) == expected
    # period 200: the emphasized class is floor(t / 200) mod 3
    assert [row["emphasized_class"] for row in rows] == [0, 0, 1, 1, 2, 2, 0]


def test_stop_oscillation_epoch_sets_amplitude_to_one():
    result = train(spiral_config(loss={"amplitude": 10, "period": 200, "stop_oscillation_epoch": 300}))
    amplitudes = [row["amplitude"] for row in result.history]
    assert amplitudes == [10, 10, 10, 1, 1, 1, 1]
    assert all(row["emphasized_weight"] == pytest.approx(1.0) for row in result.history[3:])


def test_one_compilation_serves_many_grid_points():
    def compiles():
        counts = compilation_counts()
        return {name: counts[name] for name in ("jit(_train_then_evaluate)", "jit(_evaluate)", "jit(_init_state)")}

    # Shapes nobody else in this session uses, so the counts start from this test's first point.
    base = spiral_config(data={"name": "spiral", "points_per_class": 37, "classes": 3}, training={"epochs": 300, "eval_every": 100})
    before = compiles()
    finals = set()
    for amplitude, period, seed, lr in [(1, 100, 0, 1.0), (10, 50, 1, 0.5), (30, 300, 2, 1.0), (70, 120, 0, 0.8)]:
        config = dict(base, loss={"amplitude": amplitude, "period": period, "stop_oscillation_epoch": 200},
                      optimizer={"learning_rate": lr}, seed=seed)
        finals.add(round(train(config).final["train_loss"], 6))
    after = compiles()
    # The first evaluation runs zero epochs of the training program: no evaluation program at all.
    assert {name: after[name] - before[name] for name in after} == {"jit(_train_then_evaluate)": 1, "jit(_evaluate)": 0, "jit(_init_state)": 1}
    assert len(finals) == 4  # four different trainings, not one cached answer


def test_float64_training():
    result = train(spiral_config(training={"epochs": 200, "eval_every": 100, "dtype": "float64"}))
    assert result.status == "completed"
    assert isinstance(result.final["train_loss"], float)
    assert np.asarray(result.state.params["Dense_0"]["kernel"]).dtype == np.float64


def test_bfloat16_computes_in_bfloat16_and_keeps_float32():
    """Mixed precision: the model's arithmetic in bfloat16; its parameters, optimizer state, loss
    and metrics in float32."""
    config = spiral_config(training={"epochs": 200, "eval_every": 100, "dtype": "bfloat16"}, optimizer={"learning_rate": 0.05, "momentum": 0.9})
    result = train(config)
    assert result.status == "completed" and all(np.isfinite(row["train_loss"]) and np.isfinite(row["val_accuracy"]) for row in result.history)
    kept = {np.asarray(leaf).dtype for leaf in jax.tree.leaves((result.state.params, result.state.opt_state, result.state.last_loss))}
    assert kept == {np.dtype(np.float32)}
    run = prepare([TrialConfig.model_validate(config)])
    x = run.data["x_train"][:4]
    arithmetic = str(jax.make_jaxpr(lambda params: run.engine.model.apply({"params": params}, x))(result.state.params))
    assert "bf16" in arithmetic and "dot_general" in arithmetic
    in_float32 = train(dict(config, training={**config["training"], "dtype": "float32"}))
    assert result.history[-1]["train_loss"] != in_float32.history[-1]["train_loss"]  # not float32 under another name


GROUP = [
    spiral_config(loss={"amplitude": 1, "period": 200}, seed=0),
    spiral_config(loss={"amplitude": 10, "period": 100}, seed=1),
    spiral_config(loss={"amplitude": 30, "period": 300, "stop_oscillation_epoch": 400}, optimizer={"learning_rate": 0.5}, seed=2),
]


def test_a_group_trains_each_member_as_if_alone():
    # At learning rate 1 these dynamics are chaotic: float rounding (batched or not) grows until
    # trajectories part after a few hundred steps. At 0.1 they stay together.
    calm = [dict(c, optimizer={"learning_rate": 0.1}) for c in GROUP]
    together = train_group(calm)
    for config, result in zip(calm, together):
        alone = train(config)
        assert [row["step"] for row in result.history] == [row["step"] for row in alone.history]
        for name in ("train_loss", "val_accuracy", "weighted_loss", "amplitude", "emphasized_class"):
            np.testing.assert_allclose([r[name] for r in result.history], [r[name] for r in alone.history], rtol=1e-4, atol=1e-5)


def test_every_mlp_layout_trains_a_group_as_the_automatic_one_does():
    """`model.layout` changes how a block computes, not what it trains (calm dynamics, as above)."""
    calm = [dict(c, optimizer={"learning_rate": 0.1}) for c in GROUP]
    automatic = train_group(calm)
    for layout in ("batch_major", "elementwise"):
        configs = [dict(c, model={**c["model"], "layout": layout}) for c in calm]
        assert prepare([TrialConfig.model_validate(c) for c in configs]).engine.model.layout == layout
        laid_out = train_group(configs)
        for result, reference in zip(laid_out, automatic):
            for name in ("train_loss", "val_accuracy", "weighted_loss"):
                np.testing.assert_allclose([r[name] for r in result.history], [r[name] for r in reference.history], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", ["gpu", "tpu"])
def test_a_partial_block_is_padded_to_a_power_of_two_on_an_accelerator_and_never_on_a_cpu(backend):
    for n, width in [(1, 64), (10, 1024), (63, 64), (3, None)]:
        assert padded_size(n, width, "cpu") == n
    sizes = {(1, 64): 1, (2, 64): 2, (3, 64): 4, (10, 1024): 16, (33, 64): 64, (40, 48): 48, (64, 64): 64, (70, 64): 70, (3, None): 3}
    assert {key: padded_size(*key, backend) for key in sizes} == sizes


# Shapes of their own (43 points a class), so that this file's other groups of 3 compile nothing for them.
CHECKPOINTED = [
    dict(c, data={"name": "spiral", "points_per_class": 43, "classes": 3}, optimizer={"learning_rate": 0.1},
         training={"epochs": 600, "eval_every": 100, "checkpoint_every": 200})
    for c in GROUP
]


def checkpoints_of(group, **options) -> tuple[list, dict]:
    saved = {}
    results = train_group(group, on_checkpoint=lambda i, ckpt: saved.setdefault((ckpt.epoch, i), ckpt), **options)
    return results, saved


def assert_same_leaves(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for leaf_a, leaf_b in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.shape(leaf_a) == np.shape(leaf_b) and np.array_equal(leaf_a, leaf_b, equal_nan=True)


def test_a_padded_partial_block_gives_its_points_their_unpadded_results_and_compiles_nothing_new():
    """3 points in blocks of 4 on an accelerator (the rule forced on this CPU): padded to 4, they
    run the full block's program; their results, rows and checkpoints are those of the 3 trained
    unpadded, bit for bit, and the padding's never reach the caller."""
    train_group(CHECKPOINTED + [dict(CHECKPOINTED[0], seed=3)])  # a full block of 4: its program compiled
    before = training_loop_compilations()
    reported = set()
    padded, padded_checkpoints = checkpoints_of(CHECKPOINTED, on_eval=lambda i, row: reported.add(i), width=4, backend="gpu")
    assert training_loop_compilations() == before  # the full block's program served the padded one
    assert len(padded) == 3 and reported == {0, 1, 2}
    unpadded, unpadded_checkpoints = checkpoints_of(CHECKPOINTED, width=4, backend="cpu")
    assert training_loop_compilations() == before + 1  # on a CPU: 3 points, a program of 3
    for a, b in zip(padded, unpadded):
        assert a.status == b.status == "completed" and a.steps == b.steps
        assert_same_history(a, b)
        assert_same_leaves(a.state, b.state)
    assert sorted(padded_checkpoints) == sorted(unpadded_checkpoints) == [(epoch, i) for epoch in (200, 400) for i in range(3)]
    for key, ckpt in padded_checkpoints.items():
        assert_same_leaves(ckpt.state, unpadded_checkpoints[key].state)  # one member each, no group axis
        assert_same_history(ckpt, unpadded_checkpoints[key])


def test_a_group_resumes_like_an_uninterrupted_group():
    group = [dict(c, training={"epochs": 600, "eval_every": 100, "checkpoint_every": 200}) for c in GROUP]
    uninterrupted = train_group(group)
    saved = {}
    train_group(group, on_checkpoint=lambda i, ckpt: saved.setdefault(ckpt.epoch, {}).__setitem__(i, ckpt.to_bytes()))
    at_400 = [Checkpoint.from_bytes(saved[400][i]) for i in range(3)]
    resumed = train_group(group, checkpoints=at_400)
    for a, b in zip(resumed, uninterrupted):
        assert_same_history(a, b)


def test_one_member_diverging_leaves_the_others_alone():
    stable = spiral_config(loss={"name": "dynamical_mse", "amplitude": 5, "period": 50}, optimizer={"learning_rate": 0.3})
    unstable = dict(stable, optimizer={"learning_rate": 3.0})
    results = train_group([stable, unstable, stable])
    assert [r.status for r in results] == ["completed", "diverged", "completed"]
    assert_same_history(results[0], results[2])
    assert results[0].steps == 600
    assert results[1].steps < 600 and "non-finite" in results[1].message


def test_a_member_diverging_in_a_padded_block_leaves_the_others_alone():
    stable = spiral_config(loss={"name": "dynamical_mse", "amplitude": 5, "period": 50}, optimizer={"learning_rate": 0.3})
    unstable = dict(stable, optimizer={"learning_rate": 3.0})
    group = [stable, unstable, stable]
    padded, unpadded = train_group(group, width=4, backend="gpu"), train_group(group)
    assert [r.status for r in padded] == [r.status for r in unpadded] == ["completed", "diverged", "completed"]
    for a, b in zip(padded, unpadded):
        assert (a.steps, a.message) == (b.steps, b.message)
        assert_same_history(a, b)
    assert_same_leaves(padded[2].state, unpadded[2].state)


def test_members_that_cannot_share_a_program_are_refused():
    with pytest.raises(ValueError, match="must share"):
        train_group([spiral_config(), spiral_config(model={"name": "mlp", "width": 30})])
