"""How much of a sweep's wall time the workers spend training, and how it scales.

For the quickstart sweep (75 points) and spiral sweeps of 24, 48 and 96 points (MLP width 20,
30,000 full-batch steps each) on local Ray with 2 one-CPU workers:
- efficiency = (sum of the points' own training time) / (sweep wall time x workers), where the
  wall time excludes Ray's start-up and shut-down, reported separately (efficiency_all counts
  them in);
- compilations of the training loop per worker process (from each record's worker_compilations);
- wall time against points, with a least-squares line.

    python benchmarks/sweep_efficiency.py        # writes benchmarks/results/sweep_efficiency.json
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import save  # noqa: E402
from sweep.grid import load_grid  # noqa: E402
from sweep.results import ResultsDir  # noqa: E402
from sweep.runner import results_dir_for, run_sweep  # noqa: E402

WORKERS = 2

SPIRAL = """\
name: spiral-{points}
data: {{name: spiral, points_per_class: 100, classes: 3}}
model: {{name: mlp, width: 20}}
optimizer: {{name: sgd, learning_rate: 1.0, batch_size: full}}
training: {{epochs: 30000, eval_every: 500, checkpoint_every: 10000}}
loss: {{amplitude: 1, period: 1000, stop_oscillation_epoch: 25000}}
grid:
  amplitude: [1, 3, 10, 30]
  period: [300, 1000, 3000]
  seed: {seeds}
resources: {{cpu: 1, gpu: 0}}
"""


def measure(grid: Path, out: Path) -> dict:
    spec = load_grid(grid)
    outcome = run_sweep(spec, results_dir_for(spec, out), stream=io.StringIO())
    results = ResultsDir(out / spec.name)
    records = [results.read_record(t) for t in results.record_ids()]
    training = sum(r["wall_seconds"] / r.get("group_size", 1) for r in records)
    wall = outcome.seconds - outcome.ray_startup_seconds - outcome.ray_shutdown_seconds
    compiles: dict[str, int] = {}
    for record in records:
        compiles[record["host"]] = max(compiles.get(record["host"], 0), record["worker_compilations"])
    return {
        "points": len(records),
        "ray_startup_seconds": outcome.ray_startup_seconds,
        "ray_shutdown_seconds": outcome.ray_shutdown_seconds,
        "efficiency_all": training / (outcome.seconds * WORKERS),
        "sweep_wall_seconds": wall,
        "training_seconds": training,
        "efficiency": training / (wall * WORKERS),
        "compilations_per_worker": sorted(compiles.values()),
    }


def main() -> None:
    report = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        report["quickstart"] = measure(ROOT / "grids" / "quickstart.yaml", scratch / "out")
        for points in (24, 48, 96):
            grid = scratch / f"spiral-{points}.yaml"
            grid.write_text(SPIRAL.format(points=points, seeds=list(range(points // 12))))
            report[f"spiral-{points}"] = measure(grid, scratch / "out")
    for name, row in report.items():
        print(f"{name}: {row['points']} points, Ray start-up {row['ray_startup_seconds']:.1f} s, shut-down {row['ray_shutdown_seconds']:.1f} s, "
              f"sweep {row['sweep_wall_seconds']:.1f} s, training {row['training_seconds']:.1f} s, efficiency {row['efficiency']:.2f} "
              f"({row['efficiency_all']:.2f} with Ray's start and shut-down), "
              f"compilations per worker {row['compilations_per_worker']}")
    points = np.array([report[f"spiral-{n}"]["points"] for n in (24, 48, 96)], dtype=float)
    walls = np.array([report[f"spiral-{n}"]["sweep_wall_seconds"] for n in (24, 48, 96)])
    slope, intercept = np.polyfit(points, walls, 1)
    predicted = slope * points + intercept
    r2 = 1 - ((walls - predicted) ** 2).sum() / ((walls - walls.mean()) ** 2).sum()
    report["scaling"] = {"seconds_per_point": slope, "intercept_seconds": intercept, "r_squared": r2}
    print(f"scaling: wall = {slope:.3f} s x points + {intercept:.2f} s (R^2 = {r2:.4f})")
    print(save("sweep_efficiency", report))


if __name__ == "__main__":
    main()
