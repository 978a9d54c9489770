"""Does refining pay? The region of the (T, A) diagram where the oscillation helps, located by a
coarse grid refined with `tiltsweep refine --budget` rounds (sweep.commands.refine.propose_boundary, the
function the command calls) and by uniform grids, both against a dense grid as the ground truth.

Setting: the quickstart's spiral and network (width 20, learning rate 1, full batch), STEPS
steps, SEEDS seeds. A cell "helps" where the seed-mean gain in training accuracy over A = 1
exceeds LEVEL. The dense grid (DENSE_A x DENSE_T, 8 amplitudes and 4 periods a decade) says
which of its cells help. A method that measured some cells predicts every dense cell from its
nearest measured cell (distance in decades, both axes); its error is the fraction of dense cells
it predicts wrongly: the boundary's error over the whole diagram, whether or not the truth is
monotone in A. Trainings run in this process (tiltsweep.trainers.train), each (A, T, seed) once
and shared by the methods that ask for it; a method's cost is the number of distinct trainings
it asks for (A = 1 is one training per seed at every period). Uniform grids are sub-grids of the
dense one, evenly spaced in log T and log A.

    python benchmarks/refine.py        # about 12 minutes on 2 cores
    python benchmarks/refine.py --table benchmarks/results/refine.json   # its README table of the trainings needed
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from common import markdown_table, save, tables_asked
from tiltsweep.analysis.load import Results
from tiltsweep.analysis.reduce import gain_over_baseline, reduce_seeds
from tiltsweep.sweep.commands.refine import propose_boundary
from tiltsweep.trainers import train

STEPS, SEEDS = 40_000, (0, 1, 2, 3)
DENSE_A = [float(f"{10 ** (k / 8):.3g}") for k in range(17)]  # 1 ... 100
DENSE_T = [float(f"{10 ** (2 + k / 4):.3g}") for k in range(9)]  # 100 ... 10,000
COARSE_A, COARSE_T = [1.0, 10.0, 100.0], [100.0, 1000.0, 10000.0]
LEVEL, ROUNDS, BUDGET = 0.05, 14, 16
ERRORS = (0.2, 0.15, 0.1, 0.05)
TRAINED: dict[tuple, float] = {}


def key_of(amplitude: float, period: float, seed: int) -> tuple:
    return (amplitude, 1000.0 if amplitude == 1 else period, seed)


def accuracy(amplitude: float, period: float, seed: int) -> float:
    key = key_of(amplitude, period, seed)
    if key not in TRAINED:
        config = {
            "data": {"name": "spiral", "points_per_class": 100, "classes": 3}, "model": {"name": "mlp", "width": 20},
            "optimizer": {"name": "sgd", "learning_rate": 1.0, "batch_size": "full"},
            "training": {"epochs": STEPS, "eval_every": STEPS, "keep_final_state": False},
            "loss": {"amplitude": key[0], "period": key[1]}, "seed": seed,
        }
        TRAINED[key] = train(config).final["train_accuracy"]
    return TRAINED[key]


def grid(amplitudes, periods) -> list[tuple]:
    return [(a, t, s) for a in amplitudes for t in periods for s in SEEDS]


def trainings(points) -> int:
    return len({key_of(*point) for point in points})


def summary_of(points) -> pd.DataFrame:
    rows = [{"trial_id": f"{a}/{t}/{s}", "status": "completed", "amplitude": a, "period": t, "seed": s,
             "train_accuracy": accuracy(a, t, s)} for a, t, s in points]
    return pd.DataFrame(rows)


def axes_of(summary: pd.DataFrame) -> dict:
    return {"amplitude": sorted(set(summary["amplitude"])), "period": sorted(set(summary["period"])), "seed": list(SEEDS)}


def helps(points) -> dict[tuple, bool]:
    """(A, T) -> whether the seed-mean gain over A = 1 exceeds LEVEL, for every measured cell."""
    summary = summary_of(points)
    axes = axes_of(summary)
    gains = reduce_seeds(gain_over_baseline(summary, "train_accuracy", axes), "train_accuracy_gain", axes)
    gains = gains[gains["mean"].notna()]
    return {(float(a), float(t)): bool(m > LEVEL) for a, t, m in gains[["amplitude", "period", "mean"]].itertuples(index=False)}


def error(measured: dict[tuple, bool], truth: dict[tuple, bool]) -> float:
    """The fraction of the dense cells whose nearest measured cell (in decades) says otherwise."""
    cells = np.log10(np.array(list(measured), dtype=float))
    said = np.array(list(measured.values()))
    wrong = 0
    for (a, t), helps_here in truth.items():
        nearest = np.argmin(np.hypot(cells[:, 0] - math.log10(a), cells[:, 1] - math.log10(t)))
        wrong += said[nearest] != helps_here
    return wrong / len(truth)


def refined_runs(truth: dict) -> list[dict]:
    points = grid(COARSE_A, COARSE_T)
    runs = []
    for round_ in range(ROUNDS + 1):
        runs.append({"method": "coarse + refine", "rounds": round_, "trainings": trainings(points), "error": error(helps(points), truth)})
        print(runs[-1], flush=True)
        if round_ == ROUNDS:
            break
        summary = summary_of(points)
        results = Results("refine-benchmark", None, summary, axes_of(summary), cells={(a, t) for a, t, _ in points})
        proposed = propose_boundary(results, BUDGET, "train_accuracy", "period", "amplitude")
        points += [(float(p["amplitude"]), float(p["period"]), p["seed"]) for p in proposed]
    return runs


def evenly(values: list, count: int) -> list:
    """`count` of `values` evenly spaced by index, both ends included (count - 1 divides len - 1)."""
    step = (len(values) - 1) // (count - 1)
    return values[::step]


def uniform_runs(truth: dict) -> list[dict]:
    runs = []
    for n_a, n_t in itertools.product((3, 5, 9, 17), (3, 5, 9)):
        points = grid(evenly(DENSE_A, n_a), evenly(DENSE_T, n_t))
        runs.append({"method": "uniform", "amplitudes": n_a, "periods": n_t, "trainings": trainings(points), "error": error(helps(points), truth)})
        print(runs[-1], flush=True)
    return sorted(runs, key=lambda run: run["trainings"])


def needed(runs: list[dict], level: float) -> int | None:
    """The fewest trainings with which a method's error was at most `level`."""
    reached = [run["trainings"] for run in runs if run["error"] <= level]
    return min(reached) if reached else None


def table(report: dict) -> str:
    """benchmarks/README.md's section 11 table of the trainings each method needed for the same error,
    and refine's saving (the table of every round's error is typed there: it holds an earlier scoring's run too)."""
    best = min(run["error"] for run in report["runs"] if run["method"] == "coarse + refine")
    rows, unreached = [], 0
    for row in report["trainings_needed"]:
        refined, uniform = row["coarse + refine"], row["uniform"]
        if refined is None:
            unreached += 1
        saving = f"{1 - refined / uniform:.0%}" if refined and uniform else ""
        rows.append([f"{row['error at most']:.2f}", refined or ("not reached" + (f" ({best:.3f} at best)" if unreached == 1 else "")),
                     uniform or "not reached", saving])
    return markdown_table(["error at most", "coarse + refine (now)", "uniform", "refine's saving"], rows)


def main() -> None:
    if files := tables_asked():
        print(table(files[0]))
        return
    dense = grid(DENSE_A, DENSE_T)
    truth = helps(dense)
    print(f"dense: {trainings(dense)} trainings, {sum(truth.values())} of {len(truth)} cells help", flush=True)
    refined, uniform = refined_runs(truth), uniform_runs(truth)
    needs = [{"error at most": level, "coarse + refine": needed(refined, level), "uniform": needed(uniform, level)} for level in ERRORS]
    for row in needs:
        print(row)
    report = {
        "setting": {"steps": STEPS, "seeds": SEEDS, "level": LEVEL, "budget_per_round": BUDGET, "rounds": ROUNDS,
                    "dense_amplitudes": DENSE_A, "dense_periods": DENSE_T},
        "dense": {"trainings": trainings(dense), "helps": [[a, t, h] for (a, t), h in sorted(truth.items())]},
        "runs": refined + uniform, "trainings_needed": needs}
    print(table(report))
    print(save("refine", report))


if __name__ == "__main__":
    main()
