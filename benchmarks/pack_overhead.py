"""What a worker spends around training a pack: the time of `run_pack` (the worker's whole job:
records, final states, checkpoints listing, configs) minus that of `train_group` on the same
points (the training alone), for packs of one block of N spiral points, N = 64 to 1,024. On an
accelerator the device idles for that difference; it should grow in proportion to N (a constant
cost per point), never faster.

The two are timed interleaved (run_pack, train_group, run_pack, ...), each block width compiled
first; every point keeps its final state (the default) and is evaluated 61 times, as in the
1,000-cell diagram of issue 30.

With --s3 the results directory is in a bucket of moto's S3 server (a process of its own on
127.0.0.1, as the tests start it), reached through a proxy that holds each request LATENCY
seconds (a store in another building; moto itself answers at once), and the points checkpoint
3 times (every quarter of their epochs): on object storage each write is a round trip, and a
block's checkpoints are many.

    python benchmarks/pack_overhead.py [--quick] [--s3]    # writes benchmarks/results/pack_overhead[-s3][-quick].json
    python benchmarks/pack_overhead.py --table BEFORE.json AFTER.json   # the two as benchmarks/README.md's table
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import jax

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after the installed tiltsweep: the repository's tiltsweep/ holds its root alone
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from benchmarks.common import interleaved, markdown_table, median, save, tables_asked, timed  # noqa: E402
from tiltsweep.sweep.grid import GridSpec, load_grid  # noqa: E402
from tiltsweep.sweep.run.executor import payload_for  # noqa: E402
from tiltsweep.sweep.run.packs import Pack, pack_id  # noqa: E402
from tiltsweep.sweep.run.runner import results_dir_for  # noqa: E402
from tiltsweep.sweep.run.worker import run_pack  # noqa: E402
from tiltsweep.trainers import train_group  # noqa: E402

LATENCY = 0.02  # seconds a request to the bucket takes to arrive (--s3)
GRID = """\
name: overhead
data: {{name: spiral, points_per_class: 100, classes: 3}}
model: {{name: mlp, width: 20}}
optimizer: {{name: sgd, learning_rate: 1.0, batch_size: full}}
training: {{epochs: {epochs}, eval_every: {eval_every}, batch_points: {points}, checkpoint_every: {checkpoint_every}}}
loss: {{name: dynamical_cross_entropy, amplitude: 1, period: 100}}
grid:
  amplitude: [2, 3, 5, 10, 20, 30, 50, 70]
  seed: {seeds}
"""


def grid_spec(folder: Path, points: int, epochs: int, checkpoint_every: Optional[int]) -> GridSpec:
    """The grid of `points` points (one block), written in `folder` and read."""
    grid = folder / "grid.yaml"
    grid.write_text(GRID.format(epochs=epochs, eval_every=epochs // 60, points=points, seeds=list(range(points // 8)),
                                checkpoint_every=checkpoint_every or "null"))
    return load_grid(grid)


def worker_seconds(spec: GridSpec, out) -> float:
    """run_pack of the grid's points as one pack into a fresh results directory under `out` (every point trains)."""
    members = tuple(spec.points)
    payload = payload_for(Pack(pack_id(members), members), spec, results_dir_for(spec, out), "benchmark")
    return timed(lambda: run_pack(payload, report=lambda result: None))


def table(before: dict, after: dict) -> str:
    """Two runs' rows side by side, as benchmarks/README.md shows them."""
    def cells(row: dict) -> str:
        return (f"{row['run_pack_s']:.2f} s / {row['train_group_s']:.2f} s | "
                f"{row['around_training_s']:.2f} s ({row['around_training_ms_per_point']:.1f} ms)")

    return markdown_table(["points", "before: run_pack / train_group", "before: around training (a point)",
                           "after: run_pack / train_group", "after: around training (a point)"],
                          [[f"{old['points']:,}", cells(old), cells(new)] for old, new in zip(before["rows"], after["rows"])])


def main() -> None:
    if files := tables_asked():
        print(table(*files[:2]))
        return
    quick, in_s3 = "--quick" in sys.argv, "--s3" in sys.argv
    sizes, epochs, repeats = ((16, 64, 256), 120, 1) if quick else ((64, 256, 1024), 600, 2)
    checkpoint_every = epochs // 4 if in_s3 else None
    rows = []
    with tempfile.TemporaryDirectory(prefix="pack-overhead-") as scratch, results_place(Path(scratch), in_s3) as new_out:
        for points in sizes:
            folder = Path(scratch) / str(points)
            folder.mkdir()
            spec = grid_spec(folder, points, epochs, checkpoint_every)
            configs = [point.config for point in spec.points]
            train_group(configs)  # compiles this width
            samples = interleaved({
                "run_pack": lambda: worker_seconds(spec, new_out()),
                "train_group": lambda: timed(lambda: train_group(configs)),
            }, repeats)
            whole, training = median(samples["run_pack"]), median(samples["train_group"])
            rows.append({"points": points, "run_pack_s": whole, "train_group_s": training, "around_training_s": whole - training,
                         "around_training_ms_per_point": 1000 * (whole - training) / points, "samples": samples})
            print(f"{points:5d} points: run_pack {whole:.2f} s, train_group {training:.2f} s, "
                  f"around training {whole - training:.2f} s ({1000 * (whole - training) / points:.2f} ms a point)", flush=True)
    name = "pack_overhead" + ("-s3" if in_s3 else "") + ("-quick" if quick else "")
    print(save(name, {"device": str(jax.devices()[0]), "epochs": epochs, "evaluations": 61, "checkpoint_every": checkpoint_every, "rows": rows}))


@contextmanager
def results_place(scratch: Path, in_s3: bool):
    """new_out(): a fresh place for a results directory each call, under `scratch`, or `in_s3`
    in a new bucket of a moto server started for the run (stopped after it)."""
    if not in_s3:
        yield lambda: Path(tempfile.mkdtemp(dir=scratch))
        return
    from object_store import DelayingProxy, S3Server  # tests/object_store.py: the tests' own server

    server = S3Server()
    proxy = DelayingProxy(server.port, LATENCY)
    try:
        os.environ.update({**server.env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"})
        yield lambda: f"s3://{server.bucket()}/results"
    finally:
        proxy.stop()
        server.stop()


if __name__ == "__main__":
    main()
