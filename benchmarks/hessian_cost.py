"""The cost of one Hessian measurement (top 3 eigenvalues by Lanczos of order 20) against one
training step, on the supplementary's spiral network (width 100, full batch of 300 points).

Measured interleaved: an evaluation with the Hessian, one without, and 1000 training steps;
the Hessian's cost is the difference of the two evaluations.

    python benchmarks/hessian_cost.py            # writes benchmarks/results/hessian_cost.json
    python benchmarks/hessian_cost.py --table benchmarks/results/hessian_cost.json   # its README table
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after the installed tiltsweep: the repository's tiltsweep/ holds its root alone

from benchmarks.common import interleaved, markdown_table, median, save, tables_asked, timed  # noqa: E402
from tiltsweep.trainers.config import TrialConfig  # noqa: E402
from tiltsweep.trainers.training import prepare  # noqa: E402

STEPS = 1000


def table(report: dict) -> str:
    """benchmarks/README.md's section 8 table: one Hessian measurement, one training step, and their ratio."""
    return markdown_table(["one Hessian measurement", "one training step", "ratio"],
                          [[f"{report['hessian_seconds'] * 1e3:.2f} ms", f"{report['step_seconds'] * 1e6:.1f} us", f"{report['hessian_in_steps']:.0f} steps"]])


def main() -> None:
    if files := tables_asked():
        print(table(files[0]))
        return
    config = TrialConfig.model_validate({
        "data": {"name": "spiral", "points_per_class": 100, "classes": 3},
        "model": {"name": "mlp", "width": 100},
        "optimizer": {"name": "sgd", "learning_rate": 1.0},
        "training": {"epochs": STEPS, "eval_every": STEPS, "hessian_every": 25, "hessian_top_k": 3, "hessian_order": 20},
        "loss": {"amplitude": 70, "period": 5000},
    })
    run = prepare([config])
    engine, states = run.engine, run.fresh_states()
    states, _ = engine.train_epochs(states, run.hypers, run.data, 500)  # a trained point, not the initial one
    with_hessian = lambda: jax.block_until_ready(engine.evaluate_with_hessian(states, run.hypers, run.data))
    without = lambda: jax.block_until_ready(engine.evaluate(states, run.hypers, run.data))
    steps = lambda: jax.block_until_ready(engine.train_epochs(states, run.hypers, run.data, STEPS))
    for warm in (with_hessian, without, steps):
        warm()
    samples = interleaved({
        "evaluation with Hessian": lambda: timed(with_hessian),
        "evaluation without": lambda: timed(without),
        f"{STEPS} training steps": lambda: timed(steps),
    }, repeats=20)
    medians = {name: median(values) for name, values in samples.items()}
    hessian = medians["evaluation with Hessian"] - medians["evaluation without"]
    step = medians[f"{STEPS} training steps"] / STEPS
    report = {"medians_seconds": medians, "hessian_seconds": hessian, "step_seconds": step, "hessian_in_steps": hessian / step}
    print(f"one Hessian measurement (top 3, Lanczos order 20): {hessian * 1e3:.2f} ms; one training step: {step * 1e6:.1f} us; "
          f"ratio {hessian / step:.0f} steps")
    print(table(report))
    print(save("hessian_cost", report))


if __name__ == "__main__":
    main()
