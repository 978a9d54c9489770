"""Myrtle5 (64 channels, batch 512) and WRN-28-10 (batch 128) training throughput on this CPU, in
images per second, for the record: the real runs of these models belong on GPUs.

Data: a CIFAR-10-format directory of random images (the real data is not shipped), one
minibatch per epoch; Nesterov SGD with the dynamical loss, float32. Time after compilation.

    python benchmarks/cnn_throughput.py          # writes benchmarks/results/cnn_throughput.json
    python benchmarks/cnn_throughput.py --table benchmarks/results/cnn_throughput.json   # its README table
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import jax

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after the installed tiltsweep: the repository's tiltsweep/ holds its root alone
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.common import markdown_table, save, tables_asked  # noqa: E402
from conftest import write_cifar10_dir  # noqa: E402
from tiltsweep.trainers.config import TrialConfig  # noqa: E402
from tiltsweep.trainers.training import prepare  # noqa: E402

MODELS = {
    "myrtle5, 64 channels": ({"name": "myrtle5", "channels": 64}, 512, 4),
    "wide_resnet 28-10": ({"name": "wide_resnet", "depth": 28, "widen_factor": 10}, 128, 2),
}


def throughput(cifar: Path, model: dict, batch: int, steps: int, dtype: str = "float32", points: int = 1) -> dict:
    """Images a second of `points` points (seeds 0, 1, ...) trained together as one vmapped
    block (all their images counted)."""
    config = TrialConfig.model_validate({
        "data": {"name": "cifar10", "path": str(cifar), "train_size": batch, "augment": True},
        "model": model,
        "optimizer": {"name": "sgd", "learning_rate": 0.02, "batch_size": batch, "momentum": 0.9, "nesterov": True},
        "training": {"epochs": steps, "eval_every": steps, "dtype": dtype},
        "loss": {"amplitude": 30, "period": 100},
    })
    run = prepare([config.model_copy(update={"seed": seed}) for seed in range(points)])
    states = run.fresh_states()
    started = time.perf_counter()
    states, _ = run.engine.train_epochs(states, run.hypers, run.data, 1)
    jax.block_until_ready(states)
    compile_and_first = time.perf_counter() - started
    started = time.perf_counter()
    states, _ = run.engine.train_epochs(states, run.hypers, run.data, steps)
    jax.block_until_ready(states)
    seconds = time.perf_counter() - started
    return {"batch": batch, "steps": steps, "points": points, "seconds": seconds, "images_per_second": points * batch * steps / seconds,
            "seconds_per_step": seconds / steps, "compile_and_first_step_seconds": compile_and_first}


def table(report: dict) -> str:
    """benchmarks/README.md's section 6 table: each model's batch, images a second, seconds a step, compilation and first step."""
    rows = [[name, row["batch"], f"{row['images_per_second']:.1f}", f"{row['seconds_per_step']:.2f}", f"{row['compile_and_first_step_seconds']:.0f} s"]
            for name, row in report.items() if name in MODELS]
    return markdown_table(["model", "batch", "images/s", "s/step", "compile + first step"], rows)


def main() -> None:
    if files := tables_asked():
        print(table(files[0]))
        return
    report = {}
    with tempfile.TemporaryDirectory() as scratch:
        cifar = write_cifar10_dir(Path(scratch) / "cifar-10-batches-py", per_batch=120)
        for name, (model, batch, steps) in MODELS.items():
            report[name] = throughput(cifar, model, batch, steps)
            row = report[name]
            print(f"{name} at batch {batch}: {row['images_per_second']:.1f} images/s ({row['seconds_per_step']:.2f} s/step; "
                  f"compile + first step {row['compile_and_first_step_seconds']:.0f} s)")
    print(table(report))
    print(save("cnn_throughput", report))


if __name__ == "__main__":
    main()
