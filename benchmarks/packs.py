"""Packs of same-shaped points: vmapped together (one block) against one after another.

The spiral problem (3 x 100 points, full-batch GD, learning rate 1), MLP widths 20 (the
quickstart) and 100; packs of 1 to 256 points differing in seed and amplitude; measured in
point-steps per second (points x steps / seconds), the two ways interleaved, each pack size
compiled first. `batch_points: auto` is chosen from these numbers (sweep.run.packs).

    python benchmarks/packs.py [--quick]    # writes benchmarks/results/packs-<platform>.json
    python benchmarks/packs.py --table benchmarks/results/packs-cpu.json   # its README table

On a GPU machine the same command measures the GPU (JAX's default device).
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after the installed tiltsweep: the repository's tiltsweep/ holds its root alone

from benchmarks.common import interleaved, markdown_table, median, save, tables_asked, timed  # noqa: E402
from tiltsweep.trainers import train, train_group  # noqa: E402

SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def configs(width: int, size: int, steps: int) -> list[dict]:
    return [
        {
            "data": {"name": "spiral", "points_per_class": 100, "classes": 3},
            "model": {"name": "mlp", "width": width},
            "optimizer": {"name": "sgd", "learning_rate": 1.0, "batch_size": "full"},
            "training": {"epochs": steps, "eval_every": steps, "keep_final_state": False},
            "loss": {"amplitude": [1.0, 10.0, 30.0, 70.0][i % 4], "period": 100.0},
            "seed": i,
        }
        for i in range(size)
    ]


def vmapped(width: int, size: int, steps: int) -> float:
    return size * steps / timed(lambda: train_group(configs(width, size, steps)))


def one_after_another(width: int, size: int, steps: int) -> float:
    return size * steps / timed(lambda: [train(config) for config in configs(width, size, steps)])


def table(report: dict) -> str:
    """benchmarks/README.md's section 2 table: point-steps per second of each pack size, vmapped and
    one after another, and their ratio, for each width."""
    widths = [name for name in report if name.startswith("width ")]
    header, rows = ["pack of"], {}
    for width in widths:
        header += [f"{width}, vmapped", "one after another", "ratio"]
        for size, row in report[width]["point_steps_per_second"].items():
            rows.setdefault(size, [f"{int(size):,}"]).extend(
                [f"{row['vmapped']:,.0f}", f"{row['one_after_another']:,.0f}", f"{row['vmapped'] / row['one_after_another']:.2f}x"])
    return markdown_table(header, list(rows.values()))


def main() -> None:
    if files := tables_asked():
        print(table(files[0]))
        return
    quick = "--quick" in sys.argv
    steps, sizes = (200, SIZES[::2]) if quick else (1000, SIZES)
    platform = jax.devices()[0].platform
    report = {"platform": platform, "device": str(jax.devices()[0]), "steps": steps}
    for width in (20, 100):
        for size in sizes:
            train_group(configs(width, size, 10))  # compile each block size
        train(configs(width, 1, 10)[0])
        contenders = {}
        for size in sizes:
            contenders[f"vmapped {size}"] = lambda size=size: vmapped(width, size, steps)
            contenders[f"one after another {size}"] = lambda size=size: one_after_another(width, size, steps)
        samples = interleaved(contenders, repeats=1 if quick else 2)
        medians = {name: median(values) for name, values in samples.items()}
        rows = {size: {"vmapped": medians[f"vmapped {size}"], "one_after_another": medians[f"one after another {size}"]} for size in sizes}
        report[f"width {width}"] = {"point_steps_per_second": rows, "samples": samples}
        for size, row in rows.items():
            print(f"width {width}, pack of {size:>3}: vmapped {row['vmapped']:>12,.0f}  one after another "
                  f"{row['one_after_another']:>10,.0f}  ({row['vmapped'] / row['one_after_another']:.2f}x)", flush=True)
    print(table(report))
    print(save(f"packs-{platform}", report))


if __name__ == "__main__":
    main()
