"""What mixed precision (`training.dtype: bfloat16`: the model computes in bfloat16, its parameters,
optimizer state, loss and metrics stay float32) does to accuracy, over seeds, beside float32:

- the spiral: the quickstart's network (width 20, full-batch gradient descent at learning rate 1),
  5,000 steps, at A = 1 (cross-entropy) and A = 30 (T = 1,000), 8 seeds;
- a CNN: Myrtle5 (16 channels) on CIFAR-10-format data (the tests' generator: 3 classes of
  coloured noise, 300 training and 60 validation images; real CIFAR-10 is not shipped), 10 epochs
  of minibatches of 100 with Nesterov momentum, 4 seeds.

The final validation accuracy of each training, and their mean and standard deviation over seeds.

    python benchmarks/mixed_precision.py    # writes benchmarks/results/mixed_precision.json
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after the installed tiltsweep: the repository's tiltsweep/ holds its root alone
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.common import save  # noqa: E402
from conftest import write_cifar10_dir  # noqa: E402
from tiltsweep.trainers import train  # noqa: E402

DTYPES = ("float32", "bfloat16")


def spiral(amplitude: float, seed: int, dtype: str) -> dict:
    return {"data": {"name": "spiral", "points_per_class": 100, "classes": 3}, "model": {"name": "mlp", "width": 20},
            "optimizer": {"name": "sgd", "learning_rate": 1.0, "batch_size": "full"},
            "training": {"epochs": 5000, "eval_every": 5000, "dtype": dtype, "keep_final_state": False},
            "loss": {"amplitude": amplitude, "period": 1000}, "seed": seed}


def myrtle5(cifar: Path, seed: int, dtype: str) -> dict:
    return {"data": {"name": "cifar10", "path": str(cifar), "classes": [0, 1, 2], "train_size": 300, "val_size": 60},
            "model": {"name": "myrtle5", "channels": 16},
            "optimizer": {"name": "sgd", "learning_rate": 0.05, "batch_size": 100, "momentum": 0.9, "nesterov": True},
            "training": {"epochs": 10, "eval_every": 10, "dtype": dtype, "keep_final_state": False},
            "loss": {"amplitude": 1, "period": 10}, "seed": seed}


def over_seeds(make, seeds: range) -> dict:
    accuracies = [train(make(seed)).final["val_accuracy"] for seed in seeds]
    return {"val_accuracy": accuracies, "mean": statistics.mean(accuracies), "std": statistics.stdev(accuracies)}


def main() -> None:
    report: dict = {}
    for amplitude in (1.0, 30.0):
        for dtype in DTYPES:
            report[f"spiral, A = {amplitude:g}, {dtype}"] = over_seeds(lambda seed: spiral(amplitude, seed, dtype), range(8))
    with tempfile.TemporaryDirectory() as scratch:
        cifar = write_cifar10_dir(Path(scratch) / "cifar-10-batches-py", per_batch=200)
        for dtype in DTYPES:
            report[f"myrtle5, {dtype}"] = over_seeds(lambda seed: myrtle5(cifar, seed, dtype), range(4))
    for name, row in report.items():
        print(f"{name}: final val_accuracy {row['mean']:.3f} ± {row['std']:.3f} over {len(row['val_accuracy'])} seeds")
    print(save("mixed_precision", report))


if __name__ == "__main__":
    main()
