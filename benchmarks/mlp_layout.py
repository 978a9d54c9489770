"""The MLP's two layouts of the same computation, in microseconds per full-batch training step.

- batch-major: the plain Flax MLP (nn.Dense layers), activations (N, features);
- feature-major: tiltsweep's MLP, activations (features, N), the same parameters.
Each step is the dynamical cross-entropy's gradient and a gradient-descent update, `STEPS` of them
inside one compiled loop; both layouts run interleaved in one process for every shape, float32
and float64 each in their own process (JAX's 64-bit mode is process-wide). The shapes are the
spiral's (2 inputs, 3 classes, 300 points) at several widths and depths, and the digits' (64
inputs, 10 classes) at a minibatch and at the full training set.

    python benchmarks/mlp_layout.py            # writes benchmarks/results/mlp_layout.json
    python benchmarks/mlp_layout.py --table benchmarks/results/mlp_layout.json   # its README table
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after the installed tiltsweep: the repository's tiltsweep/ holds its root alone

from benchmarks.common import in_each_dtype, interleaved, markdown_table, median, save, tables_asked, timed  # noqa: E402

# (points, inputs, width, depth, classes)
SHAPES = [(300, 2, 20, 1, 3), (300, 2, 50, 1, 3), (300, 2, 100, 1, 3), (300, 2, 200, 1, 3), (300, 2, 100, 2, 3),
          (300, 2, 100, 3, 3), (64, 64, 100, 1, 10), (1437, 64, 100, 1, 10)]
STEPS = 2_000


def gradient_step(forward, x, y, classes: int):
    """step(t, params): one gradient-descent step (learning rate 0.1) on the dynamical
    cross-entropy (A = 30, T = 1,000) of forward(params, x) -> logits against y."""
    import jax
    import jax.numpy as jnp

    from tiltsweep.trainers.loss import class_weights, dynamical_loss

    def step(t, params):
        gamma = class_weights(t, classes, 30.0, 1000.0, jnp.inf)
        loss = lambda p: dynamical_loss("dynamical_cross_entropy", forward(p, x), y, gamma)
        return jax.tree.map(lambda p, g: p - 0.1 * g, params, jax.grad(loss)(params))

    return step


def step_loop(layout: str, shape, dtype: str):
    """A jitted function running STEPS gradient-descent steps from fixed parameters."""
    import jax
    import jax.numpy as jnp

    from tiltsweep.trainers.models import MLP

    points, inputs, width, depth, classes = shape
    x = jax.random.normal(jax.random.PRNGKey(1), (points, inputs), dtype)
    y = jax.random.randint(jax.random.PRNGKey(2), (points,), 0, classes)
    model = MLP(width, depth, classes, jnp.dtype(dtype), layout)
    params = model.init(jax.random.PRNGKey(0), x[:1])["params"]
    step = gradient_step(lambda p, inputs: model.apply({"params": p}, inputs), x, y, classes)
    loop = jax.jit(lambda params, x, y: jax.lax.fori_loop(0, STEPS, step, params))
    jax.block_until_ready(loop(params, x, y))  # compile
    return lambda: jax.block_until_ready(loop(params, x, y))


def measure(dtype: str, repeats: int) -> list[dict]:
    import jax

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    rows = []
    for shape in SHAPES:
        loops = {"batch-major": step_loop("batch_major", shape, dtype), "feature-major": step_loop("feature_major", shape, dtype)}
        samples = interleaved({name: (lambda run=run: timed(run) / STEPS * 1e6) for name, run in loops.items()}, repeats)
        us = {name: median(values) for name, values in samples.items()}
        rows.append({"shape": dict(zip(("points", "inputs", "width", "depth", "classes"), shape)), "us_per_step": us,
                     "speedup": us["batch-major"] / us["feature-major"]})
    return rows


def table(results: dict) -> str:
    """benchmarks/README.md's section 9 table: each shape's us per step in both layouts and the speedup, a dtype after the other."""
    dtypes = [dtype for dtype in ("float32", "float64") if dtype in results]
    header = ["points", "inputs", "width", "depth", "classes"]
    for dtype in dtypes:
        header += [f"{dtype} batch-major", f"{dtype} feature-major", "speedup"]
    rows = []
    for by_dtype in zip(*(results[dtype] for dtype in dtypes)):
        rows.append(list(by_dtype[0]["shape"].values()))
        for row in by_dtype:
            rows[-1] += [f"{row['us_per_step']['batch-major']:.1f}", f"{row['us_per_step']['feature-major']:.1f}", f"{row['speedup']:.2f}x"]
    return markdown_table(header, rows)


def main() -> None:
    if files := tables_asked():
        print(table(files[0]))
        return
    results = in_each_dtype(__file__, measure, repeats=7)
    if results is None:
        return
    for dtype, rows in results.items():
        for row in rows:
            shape = ", ".join(f"{k} {v}" for k, v in row["shape"].items())
            print(f"{dtype} {shape}: batch-major {row['us_per_step']['batch-major']:.1f} us, "
                  f"feature-major {row['us_per_step']['feature-major']:.1f} us, {row['speedup']:.2f}x")
    print(table(results))
    print(save("mlp_layout", results))


if __name__ == "__main__":
    main()
