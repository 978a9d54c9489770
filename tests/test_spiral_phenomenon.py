"""The paper's spiral result: at learning rate 1, full-batch gradient descent with plain
cross-entropy stalls, while the dynamical loss (A of tens, T of a thousand steps) fits the data."""

import numpy as np
import pytest

from conftest import spiral_config
from trainers import train

STEPS = 40_000


def mean_train_accuracy(amplitude: float, seeds=(0, 1, 2)) -> tuple[float, list[float]]:
    accuracies = []
    for seed in seeds:
        config = spiral_config(
            data={"name": "spiral", "points_per_class": 100, "classes": 3},
            model={"name": "mlp", "width": 50},
            optimizer={"name": "sgd", "learning_rate": 1.0, "batch_size": "full"},
            training={"epochs": STEPS, "eval_every": STEPS},
            loss={"amplitude": amplitude, "period": 1000, "stop_oscillation_epoch": STEPS - 1000},
            seed=seed,
        )
        result = train(config)
        assert result.status == "completed"
        accuracies.append(result.final["train_accuracy"])
    return float(np.mean(accuracies)), accuracies


@pytest.mark.slow
def test_oscillations_fit_the_spiral_where_cross_entropy_stalls():
    plain, plain_runs = mean_train_accuracy(1.0)
    tilted, tilted_runs = mean_train_accuracy(30.0)
    print(f"train accuracy, A=1: {plain_runs} (mean {plain:.3f}); A=30, T=1000: {tilted_runs} (mean {tilted:.3f})")
    assert plain < 0.7
    assert tilted > 0.9
    assert min(tilted_runs) > max(plain_runs)
