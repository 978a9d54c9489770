"""What a worker spends around training a pack: the time of `run_pack` (the worker's whole job:
records, final states, checkpoints listing, configs) minus that of `train_group` on the same
points (the training alone), for packs of one block of N spiral points, N = 64 to 1,024. On an
accelerator the device idles for that difference; it should grow in proportion to N (a constant
cost per point), never faster.

The two are timed interleaved (run_pack, train_group, run_pack, ...), each block width compiled
first; every point keeps its final state (the default) and is evaluated 61 times, as in the
1,000-cell diagram of issue 30.

    python benchmarks/pack_overhead.py [--quick]    # writes benchmarks/results/pack_overhead[-quick].json
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import jax

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after the installed tiltsweep: the repository's tiltsweep/ holds its root alone

from benchmarks.common import interleaved, median, save, timed  # noqa: E402
from tiltsweep.sweep.grid import load_grid  # noqa: E402
from tiltsweep.sweep.run.executor import payload_for  # noqa: E402
from tiltsweep.sweep.run.packs import Pack, pack_id  # noqa: E402
from tiltsweep.sweep.run.runner import results_dir_for  # noqa: E402
from tiltsweep.sweep.run.worker import run_pack  # noqa: E402
from tiltsweep.trainers import train_group  # noqa: E402

GRID = """\
name: overhead
data: {{name: spiral, points_per_class: 100, classes: 3}}
model: {{name: mlp, width: 20}}
optimizer: {{name: sgd, learning_rate: 1.0, batch_size: full}}
training: {{epochs: {epochs}, eval_every: {eval_every}, batch_points: {points}}}
loss: {{name: dynamical_cross_entropy, amplitude: 1, period: 100}}
grid:
  amplitude: [2, 3, 5, 10, 20, 30, 50, 70]
  seed: {seeds}
"""


def pack_payload(folder: Path, points: int, epochs: int):
    """A payload of one pack of `points` points (one block) and its grid points' configs."""
    grid = folder / "grid.yaml"
    grid.write_text(GRID.format(epochs=epochs, eval_every=epochs // 60, points=points, seeds=list(range(points // 8))))
    spec = load_grid(grid)
    results = results_dir_for(spec, folder / "results")
    members = tuple(spec.points)
    return payload_for(Pack(pack_id(members), members), spec, results, "benchmark"), [p.config for p in members]


def worker_seconds(folder: Path, points: int, epochs: int) -> float:
    shutil.rmtree(folder / "results", ignore_errors=True)  # a fresh pack: every point trains
    payload, _ = pack_payload(folder, points, epochs)
    return timed(lambda: run_pack(payload, report=lambda result: None))


def main() -> None:
    quick = "--quick" in sys.argv
    sizes, epochs, repeats = ((16, 64, 256), 120, 1) if quick else ((64, 256, 1024), 600, 2)
    rows = []
    with tempfile.TemporaryDirectory(prefix="pack-overhead-") as scratch:
        for points in sizes:
            folder = Path(scratch) / str(points)
            folder.mkdir()
            _, configs = pack_payload(folder, points, epochs)
            train_group(configs)  # compiles this width
            samples = interleaved({
                "run_pack": lambda: worker_seconds(folder, points, epochs),
                "train_group": lambda: timed(lambda: train_group(configs)),
            }, repeats)
            whole, training = median(samples["run_pack"]), median(samples["train_group"])
            rows.append({"points": points, "run_pack_s": whole, "train_group_s": training, "around_training_s": whole - training,
                         "around_training_ms_per_point": 1000 * (whole - training) / points, "samples": samples})
            print(f"{points:5d} points: run_pack {whole:.2f} s, train_group {training:.2f} s, "
                  f"around training {whole - training:.2f} s ({1000 * (whole - training) / points:.2f} ms a point)", flush=True)
    print(save("pack_overhead-quick" if quick else "pack_overhead", {"device": str(jax.devices()[0]), "epochs": epochs, "evaluations": 61, "rows": rows}))


if __name__ == "__main__":
    main()
