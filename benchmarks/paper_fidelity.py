"""tiltsweep's notebook setup beside the published notebook's algorithm, re-implemented here from
its description (the notebook itself is not shipped):

- the network `stax.serial(Dense(width), Relu, Dense(C))`, initialized from `PRNGKey(seed)`;
- float64; full-batch gradient descent at learning rate 1, one jitted step per Python iteration;
- the dynamical loss with the notebook's phase, which resets after T + 1 steps: tau = t mod (T + 1),
  cycle k = t // (T + 1) (tiltsweep's period is exactly T: DESIGN.md).

Both train on tiltsweep's spiral (3 classes x 100 points; validation from data_seed + 1).
tiltsweep runs with `model.init: stax` and `training.dtype: float64` (its documented notebook
setup), through `tiltsweep.trainers.train`.

(a) step by step: from the same seed, F(t), the unweighted loss and the training accuracy at every
    one of the first STEPS_COMPARED steps of the first cycle (where the two periods do not yet
    differ and the dynamics are not yet chaotic);
(b) full runs: final training and validation accuracy after 70,000 steps at T = 5000, for widths
    20 and 40 and A in {1, 70}, 8 seeds: per cell mean, std and Welch's t of the difference.

    python benchmarks/paper_fidelity.py            # both, about 10 minutes on 2 cores
    python benchmarks/paper_fidelity.py --quick    # (a) and one seed of (b), for a look
    python benchmarks/paper_fidelity.py --table benchmarks/results/paper_fidelity.json   # its README table

Results: benchmarks/results/paper_fidelity.json, and the table in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import math
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.example_libraries import stax  # noqa: E402
from scipy import stats  # noqa: E402

from common import markdown_table, save, tables_asked  # noqa: E402
from tiltsweep.trainers import train  # noqa: E402
from tiltsweep.trainers.config import SpiralData  # noqa: E402
from tiltsweep.trainers.data import load_dataset  # noqa: E402

STEPS_COMPARED = 2000
PERIOD, STEPS = 5000, 70_000
WIDTHS, AMPLITUDES, SEEDS = (20, 40), (1.0, 70.0), range(8)
DATA = SpiralData(name="spiral", points_per_class=100, classes=3)


def notebook_run(width: int, amplitude: float, seed: int, steps: int, record: bool = False) -> dict:
    """The notebook's algorithm: its final accuracies, and with `record` F(t), the loss and the
    training accuracy before every step."""
    data = load_dataset(DATA)
    x, x_val = (jnp.asarray(a, jnp.float64) for a in (data.x_train, data.x_val))  # as tiltsweep's float64 runs see them
    y, y_val = jnp.asarray(data.y_train), jnp.asarray(data.y_val)
    classes = data.num_classes
    init_fun, apply_fun = stax.serial(stax.Dense(width), stax.Relu, stax.Dense(classes))
    _, params = init_fun(jax.random.PRNGKey(seed), (-1, x.shape[1]))

    def weights(t):
        tau, cycle = t % (PERIOD + 1), t // (PERIOD + 1)  # the notebook's phase reset after T + 1 steps
        g = 1.0 + (amplitude - 1.0) * (1.0 - jnp.abs(2.0 * tau / PERIOD - 1.0))
        raw = jnp.ones(classes).at[cycle % classes].set(g)
        return classes * raw / jnp.sum(raw)

    def losses(params, gamma):
        logits = apply_fun(params, x)
        per_example = -jax.nn.log_softmax(logits)[jnp.arange(len(y)), y]
        return jnp.mean(gamma[y] * per_example), (jnp.mean(per_example), jnp.mean(jnp.argmax(logits, -1) == y))

    @jax.jit
    def step(params, t):
        (weighted, (plain, accuracy)), grads = jax.value_and_grad(losses, has_aux=True)(params, weights(t))
        return jax.tree.map(lambda p, g: p - 1.0 * g, params, grads), jnp.stack([weighted, plain, accuracy])

    recorded = []
    for t in range(steps):
        params, metrics = step(params, t)
        if record:
            recorded.append(metrics)
    accuracy = lambda xs, ys: float(jnp.mean(jnp.argmax(apply_fun(params, xs), -1) == ys))
    out = {"train_accuracy": accuracy(x, y), "val_accuracy": accuracy(x_val, y_val)}
    if record:
        out["per_step"] = np.asarray(jnp.stack(recorded))
    return out


def tiltsweep_config(width: int, amplitude: float, seed: int, steps: int, eval_every: int) -> dict:
    return {
        "data": DATA.model_dump(), "model": {"name": "mlp", "width": width, "init": "stax"},
        "optimizer": {"name": "sgd", "learning_rate": 1.0, "batch_size": "full"},
        "training": {"epochs": steps, "eval_every": eval_every, "dtype": "float64", "keep_final_state": False},
        "loss": {"amplitude": amplitude, "period": PERIOD}, "seed": seed,
    }


def step_by_step(width: int = 20, amplitude: float = 70.0, seed: int = 0) -> dict:
    """(a): the largest relative difference of F(t) and of the loss, and the steps whose training
    accuracy differs, over the first STEPS_COMPARED steps."""
    notebook = notebook_run(width, amplitude, seed, STEPS_COMPARED, record=True)["per_step"]
    history = train(tiltsweep_config(width, amplitude, seed, STEPS_COMPARED, 1)).history[:STEPS_COMPARED]
    ours = np.array([[row["weighted_loss"], row["train_loss"], row["train_accuracy"]] for row in history])
    relative = np.abs(ours[:, :2] - notebook[:, :2]) / np.abs(notebook[:, :2])
    return {
        "width": width, "amplitude": amplitude, "seed": seed, "steps": STEPS_COMPARED,
        "max_relative_difference_F": float(relative[:, 0].max()),
        "max_relative_difference_loss": float(relative[:, 1].max()),
        "steps_with_other_training_accuracy": int(np.sum(np.round(ours[:, 2] * 300) != np.round(notebook[:, 2] * 300))),  # 300 examples
        "F_at_start_and_end": [float(notebook[0, 0]), float(notebook[-1, 0])],
    }


def full_runs(seeds) -> list[dict]:
    """(b): per cell, both implementations' final accuracies over the seeds."""
    cells = []
    for width in WIDTHS:
        for amplitude in AMPLITUDES:
            cell = {"width": width, "amplitude": amplitude, "seeds": list(seeds), "tiltsweep": {}, "notebook": {}}
            for seed in seeds:
                started = time.perf_counter()
                ours = train(tiltsweep_config(width, amplitude, seed, STEPS, STEPS)).final
                theirs = notebook_run(width, amplitude, seed, STEPS)
                for name in ("train_accuracy", "val_accuracy"):
                    cell["tiltsweep"].setdefault(name, []).append(ours[name])
                    cell["notebook"].setdefault(name, []).append(theirs[name])
                print(f"  width {width}, A = {amplitude:g}, seed {seed}: tiltsweep {ours['train_accuracy']:.3f} / "
                      f"notebook {theirs['train_accuracy']:.3f} train accuracy ({time.perf_counter() - started:.0f} s)", flush=True)
            for name in ("train_accuracy", "val_accuracy"):
                a, b = np.array(cell["tiltsweep"][name]), np.array(cell["notebook"][name])
                welch = stats.ttest_ind(a, b, equal_var=False) if len(a) > 1 else None
                cell[f"{name}_welch_t"] = None if welch is None or math.isnan(welch.statistic) else float(welch.statistic)
            cells.append(cell)
    return cells


def step_table(compared: list[dict]) -> str:
    """The README table of (a): the largest relative differences of F(t) and of the loss, and the steps with another accuracy."""
    return markdown_table(["width", "A", "F(t)", "loss", "steps with another accuracy"],
                          [[row["width"], f"{row['amplitude']:g}", f"{row['max_relative_difference_F']:.1e}",
                            f"{row['max_relative_difference_loss']:.1e}", row["steps_with_other_training_accuracy"]] for row in compared])


def table(cells: list[dict]) -> str:
    """The README table: mean ± std (ddof 1) per implementation, and Welch's t."""
    rows = []
    for cell in cells:
        for name in ("train_accuracy", "val_accuracy"):
            spread = lambda values: f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else f"{values[0]:.3f}"
            t = cell[f"{name}_welch_t"]
            rows.append([cell["width"], f"{cell['amplitude']:g}", name, spread(cell["tiltsweep"][name]), spread(cell["notebook"][name]),
                         "–" if t is None else f"{t:+.2f}"])
    return markdown_table(["width", "A", "metric", "tiltsweep (notebook setup)", "notebook's algorithm", "Welch's t"], rows)


def main() -> None:
    if files := tables_asked():
        print(step_table(files[0]["step_by_step"]) + "\n\n" + table(files[0]["full_runs"]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="(a) and one seed of (b)")
    args = parser.parse_args()
    compared = [step_by_step(20, 70.0), step_by_step(40, 70.0), step_by_step(20, 1.0)]
    for result in compared:
        print(f"(a) width {result['width']}, A = {result['amplitude']:g}: over {result['steps']} steps F(t) differs by at most "
              f"{result['max_relative_difference_F']:.2e} (relative), the loss by {result['max_relative_difference_loss']:.2e}; "
              f"training accuracy differs at {result['steps_with_other_training_accuracy']} steps", flush=True)
    cells = full_runs(range(1) if args.quick else SEEDS)
    print(step_table(compared) + "\n\n" + table(cells))
    if not args.quick:
        print(save("paper_fidelity", {"step_by_step": compared, "full_runs": cells}))


if __name__ == "__main__":
    main()
