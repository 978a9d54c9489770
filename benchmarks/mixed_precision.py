"""What mixed precision (`training.dtype: bfloat16`: the model computes in bfloat16, its parameters,
optimizer state, loss and metrics stay float32) does to the accuracy of trained models, over seeds,
beside float32:

- the spiral: the quickstart's training exactly as grids/quickstart.yaml sets it (width 20,
  full-batch gradient descent at learning rate 1, 60,000 steps, the oscillation stopped at step
  50,000), at A = 1 (cross-entropy) and A = 30 (T = 1,000), SPIRAL_SEEDS seeds;
- a CNN on a held-out split: Myrtle5 (16 channels) on scikit-learn's bundled digits (offline: 1,797
  8x8 images, 10 classes), upscaled to 32x32x3 and written as a CIFAR-10-format directory, 80% to
  train on and 20% held out (stratified), CNN_EPOCHS epochs of minibatches of 100 with Adam,
  CNN_SEEDS seeds.

For each: the final validation accuracy of every training, their mean, standard deviation and
standard error (std / sqrt(seeds)), and the difference bfloat16 - float32 seed by seed, by the
paired t-test the figures use (analysis.reduce.paired_gain_test: its mean, 95% interval and
p-value). The same seed starts both precisions from the same parameters, so the pairs share
their start; each then rounds otherwise and is another trajectory.

    python benchmarks/mixed_precision.py    # ~15 minutes on 2 CPU cores; writes benchmarks/results/mixed_precision.json
    python benchmarks/mixed_precision.py --table benchmarks/results/mixed_precision.json   # its README table
"""

from __future__ import annotations

import math
import pickle
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after the installed tiltsweep: the repository's tiltsweep/ holds its root alone

from benchmarks.common import markdown_table, save, tables_asked  # noqa: E402
from tiltsweep.analysis.reduce import paired_gain_test  # noqa: E402
from tiltsweep.trainers import train  # noqa: E402

DTYPES = ("float32", "bfloat16")
SPIRAL_SEEDS = 16
CNN_SEEDS = 6
CNN_EPOCHS = 15


def spiral(amplitude: float, seed: int, dtype: str) -> dict:
    """The quickstart's point at this amplitude (its period, 1,000, and every other setting from the grid file)."""
    grid = yaml.safe_load((ROOT / "grids" / "quickstart.yaml").read_text())
    training = {key: value for key, value in grid["training"].items() if key != "checkpoint_every"}
    return {**{section: grid[section] for section in ("data", "model", "optimizer", "schedule")},
            "training": {**training, "eval_every": training["epochs"], "dtype": dtype, "keep_final_state": False},
            "loss": {**grid["loss"], "amplitude": amplitude}, "seed": seed}


def write_digits_as_cifar10(root: Path) -> Path:
    """scikit-learn's digits as a `cifar-10-batches-py` directory: each 8x8 image (0-16) upscaled
    4x to 32x32, grey in 3 channels, 0-255; a stratified 80/20 split (split seed 0), the 80% in
    the five training batches and the 20% in the test batch (the validation split)."""
    from tiltsweep.trainers.config import DigitsData
    from tiltsweep.trainers.data import load_digits

    digits = load_digits(DigitsData(name="digits", val_fraction=0.2, split_seed=0))  # pixels / 16

    def as_cifar(pixels: np.ndarray) -> np.ndarray:
        images = np.clip(np.round(np.kron(pixels.reshape(-1, 8, 8), np.ones((4, 4))) * 255), 0, 255).astype(np.uint8)
        return np.repeat(images[:, None], 3, axis=1).reshape(len(images), 3072)  # channel-major, as CIFAR-10's

    x_train, x_val, y_train, y_val = as_cifar(digits.x_train), as_cifar(digits.x_val), digits.y_train, digits.y_val
    root.mkdir(parents=True, exist_ok=True)
    for index, part in enumerate(np.array_split(np.arange(len(x_train)), 5), start=1):
        with open(root / f"data_batch_{index}", "wb") as handle:
            pickle.dump({b"data": x_train[part], b"labels": y_train[part].tolist()}, handle)
    with open(root / "test_batch", "wb") as handle:
        pickle.dump({b"data": x_val, b"labels": y_val.tolist()}, handle)
    return root


def myrtle5(digits: Path, seed: int, dtype: str) -> dict:
    return {"data": {"name": "cifar10", "path": str(digits)}, "model": {"name": "myrtle5", "channels": 16},
            "optimizer": {"name": "adam", "learning_rate": 0.003, "batch_size": 100},
            "training": {"epochs": CNN_EPOCHS, "eval_every": CNN_EPOCHS, "dtype": dtype, "keep_final_state": False},
            "loss": {"amplitude": 1, "period": 10}, "seed": seed}


def over_seeds(make, seeds: range) -> dict:
    finals = [train(make(seed)).final for seed in seeds]
    accuracies = [final["val_accuracy"] for final in finals]
    std = statistics.stdev(accuracies)
    return {"val_accuracy": accuracies, "train_accuracy": [final["train_accuracy"] for final in finals],
            "mean": statistics.mean(accuracies), "std": std, "se": std / math.sqrt(len(accuracies))}


def compared(rows: dict) -> dict:
    """bfloat16 - float32 in final validation accuracy, seed by seed (the same seed starts both
    from the same parameters), by analysis.reduce's paired t-test: mean, 95% interval, p-value."""
    return paired_gain_test([b - f for f, b in zip(rows["float32"]["val_accuracy"], rows["bfloat16"]["val_accuracy"])])


def table(report: dict) -> str:
    """benchmarks/README.md's section 14 table: mean ± standard error (standard deviation) of each
    precision's final validation accuracy, and their paired difference."""
    spiral_base, cnn_base = report["settings"]["spiral"]["base"], report["settings"]["cnn"]["base"]
    described = {
        "spiral, A = 1": f"spiral, the quickstart's training as grids/quickstart.yaml sets it ({spiral_base['training']['epochs']:,} steps, "
                         f"oscillation stopped at {spiral_base['loss']['stop_oscillation_epoch']:,}), A = 1",
        "spiral, A = 30": f"the same at A = 30, T = {spiral_base['loss']['period']:,}",
        "myrtle5, digits": f"Myrtle5 ({cnn_base['model']['channels']} channels), scikit-learn's digits upscaled to 32x32x3, 20% held out "
                           f"(stratified), {cnn_base['training']['epochs']} epochs of Adam",
    }
    rows = []
    for name, what in described.items():
        measured, paired = report[name], report[name]["bfloat16_minus_float32"]
        rows.append([f"{what} ({paired['n']} seeds)", *(f"{measured[d]['mean']:.3f} ± {measured[d]['se']:.3f} ({measured[d]['std']:.3f})" for d in DTYPES),
                     f"{paired['mean']:+.3f} ({paired['ci_low']:+.3f} to {paired['ci_high']:+.3f}, p = {paired['p_value']:.2f})"])
    return markdown_table(["training", *DTYPES, "bfloat16 - float32, paired by seed (95% interval, p)"], rows)


def main() -> None:
    if files := tables_asked():
        print(table(files[0]))
        return
    report: dict = {"settings": {"spiral": {"seeds": SPIRAL_SEEDS, "base": spiral(1.0, 0, "float32")},
                                 "cnn": {"seeds": CNN_SEEDS, "base": myrtle5(Path("DIGITS"), 0, "float32")}}}
    for amplitude in (1.0, 30.0):
        rows = {dtype: over_seeds(lambda seed: spiral(amplitude, seed, dtype), range(SPIRAL_SEEDS)) for dtype in DTYPES}
        report[f"spiral, A = {amplitude:g}"] = {**rows, "bfloat16_minus_float32": compared(rows)}
    with tempfile.TemporaryDirectory() as scratch:
        digits = write_digits_as_cifar10(Path(scratch) / "cifar-10-batches-py")
        rows = {dtype: over_seeds(lambda seed: myrtle5(digits, seed, dtype), range(CNN_SEEDS)) for dtype in DTYPES}
        report["myrtle5, digits"] = {**rows, "bfloat16_minus_float32": compared(rows)}
    for name, rows in report.items():
        if name == "settings":
            continue
        line = ", ".join(f"{dtype} {rows[dtype]['mean']:.3f} ± {rows[dtype]['se']:.3f} (SE; std {rows[dtype]['std']:.3f})" for dtype in DTYPES)
        paired = rows["bfloat16_minus_float32"]
        print(f"{name}: final val_accuracy {line}; bfloat16 - float32 {paired['mean']:+.3f} "
              f"(95% interval {paired['ci_low']:+.3f} to {paired['ci_high']:+.3f}, p = {paired['p_value']:.2f}, paired over {paired['n']} seeds)")
    print(table(report))
    print(save("mixed_precision", report))


if __name__ == "__main__":
    main()
