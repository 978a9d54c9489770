"""The paper's spiral result: at learning rate 1, full-batch gradient descent with plain
cross-entropy stalls, while the dynamical loss (A of tens, T of a thousand steps) fits the data.

These trainings pass through bifurcations, so one seed's final accuracy changes with the CPU's
instruction set (XLA builds other kernels, the last bits differ, the chaos amplifies them): a seed
at A = 30 that ends at 0.99 on one machine was seen at 0.66 on another. The test asserts the effect
on means over SEEDS seeds, with margins no few seeds can cross. Measured over 16 seeds on Intel
Xeon (AVX-512), and on it with XLA_FLAGS=--xla_cpu_max_isa=AVX2 and =SSE4_2 (cache off):
- A = 1:  mean 0.504 / 0.492 / 0.489, every seed in 0.45-0.56;
- A = 30: mean 0.971 / 0.976 / 0.963, every seed in 0.89-0.99 (AMD EPYC, 3 seeds: one at 0.66).
"""

import numpy as np
import pytest

from conftest import spiral_config
from tiltsweep.trainers import train

STEPS = 40_000
SEEDS = range(12)


def final_train_accuracies(amplitude: float) -> list[float]:
    accuracies = []
    for seed in SEEDS:
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
    return accuracies


@pytest.mark.slow
def test_oscillations_fit_the_spiral_where_cross_entropy_stalls():
    plain, tilted = np.array(final_train_accuracies(1.0)), np.array(final_train_accuracies(30.0))
    print(f"train accuracy over {len(SEEDS)} seeds, A=1: {plain.round(3)} (mean {plain.mean():.3f}); "
          f"A=30, T=1000: {tilted.round(3)} (mean {tilted.mean():.3f})")
    # Why these margins hold on any CPU: a seed's accuracy lies in [1/3, 1], so one seed moves a
    # mean of 12 by at most 0.67 / 12 = 0.056.
    # - A = 1 stalls: measured means 0.49-0.50; reaching 0.65 takes 4 seeds fitting the spiral whole.
    assert plain.mean() < 0.65
    # - A = 30 fits: measured means 0.96-0.98; falling to 0.85 takes 3 seeds back at chance level,
    #   or 5 at the worst outcome seen (0.66).
    assert tilted.mean() > 0.85
    # - The gain, measured at 0.47-0.48, is more than twice this bound.
    assert tilted.mean() - plain.mean() > 0.2
