"""How much of a sweep's wall time the workers spend training, and how it scales.

For the quickstart sweep (75 points) and spiral sweeps of 24, 48 and 96 points (MLP width 20,
30,000 full-batch steps each) on local Ray with 2 one-CPU workers:
- efficiency = (sum of the points' own training time) / (sweep wall time x workers), where the
  wall time excludes Ray's start-up and shut-down, reported separately (efficiency_all counts
  them in);
- each sweep twice: with an empty persistent compilation cache (`cold`: the first sweep of these
  shapes on a machine), then again into a new results directory with the cache the first run
  filled (`warm`: re-runs, resumed sweeps, later sweeps of the same shapes);
- compilations of the training loop per worker process (from each record's worker_compilations;
  a program loaded from the cache counts);
- wall time against points, with a least-squares line per round;
- every sweep `--rounds` times (3), the rounds one after the other; medians and ranges reported.

    python benchmarks/sweep_efficiency.py        # writes benchmarks/results/sweep_efficiency.json
    python benchmarks/sweep_efficiency.py --table benchmarks/results/sweep_efficiency.json   # its README table
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after the installed tiltsweep: the repository's tiltsweep/ holds its root alone

from benchmarks.common import markdown_table, median, save, tables_asked  # noqa: E402
from tiltsweep.sweep.grid import load_grid  # noqa: E402
from tiltsweep.sweep.store import ResultsDir  # noqa: E402
from tiltsweep.sweep.run.runner import results_dir_for, run_sweep  # noqa: E402

WORKERS = 2
TARGETED = ("quickstart", "spiral-96")  # the sweeps the target efficiency (0.8) is for: bold in the table

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


def measure(grid: Path, out: Path, cache: Path) -> dict:
    os.environ["TILTSWEEP_COMPILE_CACHE"] = str(cache)  # the local workers inherit it
    spec = load_grid(grid)
    outcome = run_sweep(spec, results_dir_for(spec, out), stream=io.StringIO())
    results = ResultsDir(out / spec.name)
    records = [record.model_dump() for _, record in results.records.all(on_corrupt=print).values()]
    training = sum(r["wall_seconds"] / r["trained_with"] for r in records)
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


def cold_and_warm(grid: Path, scratch: Path) -> dict:
    """The sweep with an empty cache, then again (new results directory) with what it cached."""
    cache = Path(tempfile.mkdtemp(prefix="cache-", dir=scratch))
    runs = {"cold": measure(grid, Path(tempfile.mkdtemp(dir=scratch)), cache)}
    runs["warm"] = measure(grid, Path(tempfile.mkdtemp(dir=scratch)), cache)
    return runs


def summarize(rounds: list[dict]) -> dict:
    """Per quantity: the median over the rounds, and for efficiency also the range."""
    summary = {key: median([r[key] for r in rounds]) for key in rounds[0] if isinstance(rounds[0][key], float)}
    summary["efficiency_range"] = [min(r["efficiency"] for r in rounds), max(r["efficiency"] for r in rounds)]
    summary["points"] = rounds[0]["points"]
    summary["compilations_per_worker"] = sorted({c for r in rounds for c in r["compilations_per_worker"]})
    return summary


def line_fit(points, walls) -> dict:
    points, walls = np.asarray(points, dtype=float), np.asarray(walls, dtype=float)
    slope, intercept = np.polyfit(points, walls, 1)
    predicted = slope * points + intercept
    r2 = 1 - ((walls - predicted) ** 2).sum() / ((walls - walls.mean()) ** 2).sum()
    return {"seconds_per_point": float(slope), "intercept_seconds": float(intercept), "r_squared": float(r2)}


def table(report: dict) -> str:
    """benchmarks/README.md's sections 3-5 table (the latest measurement): each sweep's medians, cold and warm."""
    rows = []
    for name in report["samples"]:
        for cache, row in report[name].items():
            low, high = row["efficiency_range"]
            efficiency = f"**{row['efficiency']:.2f}**" if name in TARGETED else f"{row['efficiency']:.2f}"
            rows.append([name, cache, row["points"], f"{row['ray_startup_seconds']:.1f} s", f"{row['ray_shutdown_seconds']:.1f} s",
                         f"{row['sweep_wall_seconds']:.1f} s", f"{row['training_seconds']:.1f} s", f"{efficiency} ({low:.2f}-{high:.2f})",
                         f"{row['efficiency_all']:.2f}", ", ".join(str(count) for count in row["compilations_per_worker"])])
    return markdown_table(["sweep", "cache", "trainings", "Ray start-up", "Ray shut-down", "sweep wall", "points' training time",
                           "efficiency (range)", "with Ray", "compilations per worker"], rows)


def main() -> None:
    if files := tables_asked():
        print(table(files[0]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="repetitions of every sweep, interleaved (default 3)")
    rounds = parser.parse_args().rounds
    sweeps = {"quickstart": ROOT / "grids" / "quickstart.yaml"}
    samples: dict[str, dict[str, list]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for points in (24, 48, 96):
            sweeps[f"spiral-{points}"] = scratch / f"spiral-{points}.yaml"
            sweeps[f"spiral-{points}"].write_text(SPIRAL.format(points=points, seeds=list(range(points // 12))))
        for _ in range(rounds):
            for name, grid in sweeps.items():
                for cache, row in cold_and_warm(grid, scratch).items():
                    samples.setdefault(name, {}).setdefault(cache, []).append(row)
    report = {"rounds": rounds, "samples": samples}
    for name, runs in samples.items():
        for cache, rows in runs.items():
            row = report.setdefault(name, {})[cache] = summarize(rows)
            low, high = row["efficiency_range"]
            print(f"{name} ({cache}, median of {rounds}): {row['points']} points, Ray start-up {row['ray_startup_seconds']:.1f} s, "
                  f"shut-down {row['ray_shutdown_seconds']:.1f} s, sweep {row['sweep_wall_seconds']:.1f} s, "
                  f"training {row['training_seconds']:.1f} s, efficiency {row['efficiency']:.2f} ({low:.2f}-{high:.2f}; "
                  f"{row['efficiency_all']:.2f} with Ray's start and shut-down), "
                  f"compilations per worker {row['compilations_per_worker']}")
    # One fit per round: the machine's speed drifts between rounds more than within one.
    sizes = (24, 48, 96)
    for cache in ("cold", "warm"):
        fits = [line_fit(sizes, [samples[f"spiral-{n}"][cache][i]["sweep_wall_seconds"] for n in sizes]) for i in range(rounds)]
        report[f"scaling_{cache}"] = {"rounds": fits, **{key: median([fit[key] for fit in fits]) for key in fits[0]}}
        for fit in fits:
            print(f"scaling ({cache}): wall = {fit['seconds_per_point']:.3f} s x points + {fit['intercept_seconds']:.2f} s "
                  f"(R^2 = {fit['r_squared']:.4f})")
    print(table(report))
    print(save("sweep_efficiency", report))


if __name__ == "__main__":
    main()
