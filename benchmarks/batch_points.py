"""Grid points trained together (training.batch_points, vmap) against one at a time.

The spiral problem (3 x 100 points, full-batch GD, learning rate 1), MLP widths 20 (the
quickstart) and 100; groups of G = 1, 2, 4, 8 points differing in seed and amplitude; measured
in grid-point steps per second (G x steps / seconds), interleaved, after compiling each size.

    python benchmarks/batch_points.py            # writes benchmarks/results/batch_points.json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import interleaved, median, save, timed  # noqa: E402
from tiltsweep.trainers import train_group  # noqa: E402

STEPS = 10_000
GROUPS = (1, 2, 4, 8)


def configs(width: int, group: int, steps: int) -> list[dict]:
    return [
        {
            "data": {"name": "spiral", "points_per_class": 100, "classes": 3},
            "model": {"name": "mlp", "width": width},
            "optimizer": {"name": "sgd", "learning_rate": 1.0, "batch_size": "full"},
            "training": {"epochs": steps, "eval_every": 1000, "batch_points": group},
            "loss": {"amplitude": [1.0, 10.0, 30.0, 70.0][i % 4], "period": 1000.0},
            "seed": i,
        }
        for i in range(group)
    ]


def main() -> None:
    results = {}
    for width in (20, 100):
        for group in GROUPS:
            train_group(configs(width, group, 100))  # compile this group size
        contenders = {
            f"G={group}": (lambda group=group: group * STEPS / timed(lambda: train_group(configs(width, group, STEPS))))
            for group in GROUPS
        }
        samples = interleaved(contenders, repeats=3)
        medians = {name: median(values) for name, values in samples.items()}
        results[f"width {width}"] = {"grid_point_steps_per_second": medians, "samples": samples,
                                     "ratio_to_one_at_a_time": {k: v / medians["G=1"] for k, v in medians.items()}}
        print(f"width {width}: " + ", ".join(f"{k} {v:,.0f} ({v / medians['G=1']:.2f}x)" for k, v in medians.items()))
    print(save("batch_points", results))


if __name__ == "__main__":
    main()
