"""Trainer throughput on the paper's spiral problem, in grid-point steps per second.

Problem: 3 classes x 100 points, MLP with one hidden layer of 100, full-batch gradient descent at
learning rate 1, the triangular dynamical loss (A = 30, T = 1000).
- straightforward: the published notebook's way, one jitted step per Python iteration, then the
  loss, the accuracy, the weighted loss and the class weights recorded after every step, on the
  plain Flax MLP; also on tiltsweep's feature-major MLP, to show what the layout alone gives it;
- tiltsweep: trainers.training, evaluating every `eval_every` steps.
All run interleaved in one process (9 rounds), after a warm-up that compiles everything; float32
and float64 each run in their own process (JAX's 64-bit mode is process-wide).

    python benchmarks/trainer_throughput.py            # writes benchmarks/results/trainer_throughput.json
    python benchmarks/trainer_throughput.py --table benchmarks/results/trainer_throughput.json   # its README table
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after the installed tiltsweep: the repository's tiltsweep/ holds its root alone

from benchmarks.common import in_each_dtype, interleaved, markdown_table, median, save, tables_asked, timed  # noqa: E402

WIDTH, LR, AMPLITUDE, PERIOD = 100, 1.0, 30.0, 1000.0


def config(steps: int, eval_every: int, dtype: str, seed: int = 0) -> dict:
    return {
        "data": {"name": "spiral", "points_per_class": 100, "classes": 3},
        "model": {"name": "mlp", "width": WIDTH},
        "optimizer": {"name": "sgd", "learning_rate": LR, "batch_size": "full"},
        "training": {"epochs": steps, "eval_every": eval_every, "dtype": dtype},
        "loss": {"amplitude": AMPLITUDE, "period": PERIOD},
        "seed": seed,
    }


def straightforward(dtype: str, layout: str = "batch_major"):
    """The published notebook's loop, on the same loss: per step one jitted update, then the loss,
    the accuracy and the weighted loss (each a jitted call) and the class weights computed
    eagerly, all kept in lists, as the notebook records them. Its model is the plain Flax MLP
    (nn.Dense layers, batch-major); with `layout` feature_major, tiltsweep's layout of the same MLP instead."""
    import jax
    import jax.numpy as jnp

    from tiltsweep.trainers.data import spiral_points
    from tiltsweep.trainers.loss import class_weights, dynamical_loss
    from tiltsweep.trainers.models import MLP

    x, y = spiral_points(100, 3, 4.0, 0.2, 0)
    x = jnp.asarray(x, dtype)
    model = MLP(WIDTH, 1, 3, jnp.dtype(dtype), layout)
    params0 = model.init(jax.random.PRNGKey(0), x[:1])["params"]

    def weights(t):
        return class_weights(t, 3, AMPLITUDE, PERIOD, jnp.inf)

    def weighted(params, t):
        return dynamical_loss("dynamical_cross_entropy", model.apply({"params": params}, x), y, weights(t))

    @jax.jit
    def step(params, t):
        grads = jax.grad(weighted)(params, t)
        return jax.tree.map(lambda p, g: p - LR * g, params, grads)

    loss = jax.jit(lambda params: dynamical_loss("dynamical_cross_entropy", model.apply({"params": params}, x), y, jnp.ones(3, dtype)))
    weighted_loss = jax.jit(weighted)
    accuracy = jax.jit(lambda params: jnp.mean(jnp.argmax(model.apply({"params": params}, x), axis=1) == y))

    def run(steps: int) -> None:
        params, losses, accuracies, weighted_losses, gammas = params0, [], [], [], []
        for t in range(steps):
            params = step(params, t)
            losses.append(loss(params))
            accuracies.append(accuracy(params))
            weighted_losses.append(weighted_loss(params, t + 1))
            gammas.append(weights(t + 1))  # eager, as the notebook's c_fn
        jax.block_until_ready((params, losses[-1], accuracies[-1], weighted_losses[-1], gammas[-1]))

    return run


def measure(dtype: str, repeats: int) -> dict:
    """Steps per second of both, interleaved, in this process."""
    import jax

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    from tiltsweep.trainers import train

    baseline, baseline_with_our_model = straightforward(dtype), straightforward(dtype, "feature_major")
    baseline(5), baseline_with_our_model(5)  # compile
    train(config(200, 100, dtype))  # compile
    base_steps, our_steps = 2_000, 20_000
    contenders = {
        "straightforward": lambda: base_steps / timed(lambda: baseline(base_steps)),
        "straightforward, tiltsweep's MLP layout": lambda: base_steps / timed(lambda: baseline_with_our_model(base_steps)),
        "tiltsweep, eval every 100": lambda: our_steps / timed(lambda: train(config(our_steps, 100, dtype, seed=1))),
        "tiltsweep, eval every 1000": lambda: our_steps / timed(lambda: train(config(our_steps, 1000, dtype, seed=1))),
    }
    samples = interleaved(contenders, repeats)
    medians = {name: median(values) for name, values in samples.items()}

    def speedups(ours: str) -> dict:
        """Ratio of the medians, and the spread of the ratios round by round (each round runs
        both back to back, so a slow spell of the machine hits both)."""
        rounds = [a / b for a, b in zip(samples[ours], samples["straightforward"])]
        return {"of_medians": medians[ours] / medians["straightforward"], "rounds_min": min(rounds), "rounds_max": max(rounds)}

    return {
        "steps_per_second": medians,
        "samples": samples,
        "speedup_eval_100": speedups("tiltsweep, eval every 100"),
        "speedup_eval_1000": speedups("tiltsweep, eval every 1000"),
    }


def table(results: dict) -> str:
    """benchmarks/README.md's section 1 table: median steps per second, and the speedups with their rounds' range."""
    rows = []
    for dtype in ("float32", "float64"):
        steps = results[dtype]["steps_per_second"]
        speedups = [f"**{s['of_medians']:.1f}x** (rounds {s['rounds_min']:.1f}-{s['rounds_max']:.1f}x)"
                    for s in (results[dtype]["speedup_eval_100"], results[dtype]["speedup_eval_1000"])]
        rows.append([dtype, f"{steps['straightforward']:,.0f} steps/s", *(f"{steps[name]:,.0f}" for name in list(steps)[1:]), *speedups])
    return markdown_table(["dtype", "straightforward", "straightforward, feature-major MLP", "tiltsweep, eval every 100",
                           "tiltsweep, eval every 1000", "speedup (100)", "speedup (1000)"], rows)


def main() -> None:
    if files := tables_asked():
        print(table(files[0]))
        return
    results = in_each_dtype(__file__, measure, repeats=9)
    if results is None:
        return
    for dtype in results:
        steps = results[dtype]["steps_per_second"]
        print(f"{dtype}: " + ", ".join(f"{name} {value:,.0f} steps/s" for name, value in steps.items()))
        for every in (100, 1000):
            speedup = results[dtype][f"speedup_eval_{every}"]
            print(f"  speedup, eval every {every}: {speedup['of_medians']:.1f}x "
                  f"(round by round {speedup['rounds_min']:.1f}x to {speedup['rounds_max']:.1f}x)")
    print(table(results))
    print(save("trainer_throughput", results))


if __name__ == "__main__":
    main()
