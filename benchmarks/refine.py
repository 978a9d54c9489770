"""Does refining pay? The amplitude at which the oscillation starts to help, per period, located
by a coarse grid refined with `tiltsweep refine --budget` rounds (sweep.refine.propose_boundary,
the function the command calls) and by uniform grids of as many trainings, both against a dense
grid as the ground truth.

Setting: the quickstart's spiral and network (width 20, learning rate 1, full batch), STEPS
steps, T in PERIODS, 3 seeds. The boundary at one T is the amplitude where the seed-mean gain in
training accuracy over A = 1 first rises above LEVEL, interpolated linearly in log A between the
two measured amplitudes around it; its error is |log10 A_found - log10 A_dense| (decades), averaged
over the periods (a boundary one side finds and the other does not counts MISSED decades).
Trainings run in this process (tiltsweep.trainers.train), each (A, T, seed) once and shared by
the methods that ask for it; a method's cost is the number of trainings it asks for.

    python benchmarks/refine.py        # about 10 minutes on 2 cores
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from common import save
from tiltsweep.analysis.load import Results
from tiltsweep.analysis.reduce import gain_over_baseline, reduce_seeds
from tiltsweep.sweep.refine import propose_boundary
from tiltsweep.trainers import train

STEPS, PERIODS, SEEDS = 20_000, (100.0, 300.0, 1000.0, 3000.0), (0, 1, 2)
DENSE = [float(f"{10 ** (k / 8):.3g}") for k in range(17)]  # 1 ... 100, 8 a decade
COARSE = [1.0, 10.0, 100.0]
LEVEL, MISSED, ROUNDS, BUDGET = 0.1, 1.0, 4, 12
TRAINED: dict[tuple, float] = {}


def accuracy(amplitude: float, period: float, seed: int) -> float:
    key = (amplitude, 1000.0 if amplitude == 1 else period, seed)  # A = 1: one training per seed at every period
    if key not in TRAINED:
        config = {
            "data": {"name": "spiral", "points_per_class": 100, "classes": 3}, "model": {"name": "mlp", "width": 20},
            "optimizer": {"name": "sgd", "learning_rate": 1.0, "batch_size": "full"},
            "training": {"epochs": STEPS, "eval_every": STEPS, "keep_final_state": False},
            "loss": {"amplitude": key[0], "period": key[1]}, "seed": seed,
        }
        TRAINED[key] = train(config).final["train_accuracy"]
    return TRAINED[key]


def summary_of(points) -> pd.DataFrame:
    rows = [{"trial_id": f"{a}/{t}/{s}", "status": "completed", "amplitude": a, "period": t, "seed": s,
             "train_accuracy": accuracy(a, t, s)} for a, t, s in points]
    return pd.DataFrame(rows)


def boundaries(summary: pd.DataFrame) -> dict[float, float]:
    """Per period in PERIODS, the amplitude where the seed-mean gain first rises above LEVEL (NaN if never)."""
    axes = {"amplitude": sorted(set(summary["amplitude"])), "period": sorted(set(summary["period"])), "seed": list(SEEDS)}
    gains = reduce_seeds(gain_over_baseline(summary, "train_accuracy", axes), "train_accuracy_gain", axes)
    found = {}
    for period in PERIODS:
        line = gains[(gains["period"] == period) & gains["mean"].notna()].sort_values("amplitude")
        amplitudes, means = line["amplitude"].to_numpy(dtype=float), line["mean"].to_numpy(dtype=float)
        above = np.flatnonzero(means > LEVEL)
        if not len(above) or above[0] == 0:
            found[period] = math.nan
            continue
        i = above[0]
        low, high = math.log10(amplitudes[i - 1]), math.log10(amplitudes[i])
        fraction = (LEVEL - means[i - 1]) / (means[i] - means[i - 1])
        found[period] = 10 ** (low + fraction * (high - low))
    return found


def error(found: dict, truth: dict) -> float:
    errors = []
    for period in PERIODS:
        a, b = found[period], truth[period]
        errors.append(0.0 if math.isnan(a) and math.isnan(b) else MISSED if math.isnan(a) or math.isnan(b) else abs(math.log10(a / b)))
    return float(np.mean(errors))


def grid_points(amplitudes) -> list[tuple]:
    return [(a, t, s) for a in amplitudes for t in PERIODS for s in SEEDS]


def refined_runs(truth: dict) -> list[dict]:
    points = grid_points(COARSE)
    runs = []
    for round_ in range(ROUNDS + 1):
        summary = summary_of(points)
        runs.append({"method": "coarse + refine", "rounds": round_, "trainings": trainings(points),
                     "error_decades": error(boundaries(summary), truth)})
        if round_ == ROUNDS:
            break
        axes = {"amplitude": sorted(set(summary["amplitude"])), "period": sorted(set(summary["period"])), "seed": list(SEEDS)}
        results = Results("refine-benchmark", None, summary, axes, cells={(a, t) for a, t, _ in points})
        proposed = propose_boundary(results, BUDGET, "train_accuracy", "period", "amplitude")
        points += [(float(p["amplitude"]), float(p["period"]), p["seed"]) for p in proposed]  # new periods cost too
    return runs


def trainings(points) -> int:
    """Distinct trainings: A = 1 is one training per seed at every period."""
    return len({(a, 1000.0 if a == 1 else t, s) for a, t, s in points})


def uniform_runs(truth: dict, sizes) -> list[dict]:
    runs = []
    for size in sizes:
        amplitudes = [1.0] + [float(f"{10 ** (2 * k / (size - 1)):.3g}") for k in range(1, size)]
        points = grid_points(amplitudes)
        runs.append({"method": "uniform", "amplitudes": size, "trainings": trainings(points), "error_decades": error(boundaries(summary_of(points)), truth)})
    return runs


def main() -> None:
    truth = boundaries(summary_of(grid_points(DENSE)))
    print("dense boundary (A where the gain passes", LEVEL, "):", {t: round(a, 2) for t, a in truth.items()}, flush=True)
    runs = refined_runs(truth) + uniform_runs(truth, range(3, 10))
    for run in runs:
        print(run, flush=True)
    dense = {"trainings": trainings(grid_points(DENSE)), "boundary": truth}
    print(save("refine", {"setting": {"steps": STEPS, "periods": PERIODS, "seeds": SEEDS, "level": LEVEL, "budget_per_round": BUDGET},
                          "dense": dense, "runs": runs}))


if __name__ == "__main__":
    main()
