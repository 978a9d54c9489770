"""Results on object storage against results on a local disk, on this machine (issue 29):

- the same sweep (the quickstart: 63 trainings) run with `--out` a local folder and an S3 bucket
  of a real S3-compatible server on 127.0.0.1 (moto's, as in the tests), interleaved, ROUNDS
  rounds: the wall time of each, their medians and ratio, and the ratio within each round (the
  two runs of a round ran back to back);
- `tiltsweep status` on a results directory of 10,000 points (benchmarks/scale.py's sweep, run
  once onto a disk and copied into the bucket), on the disk and in the bucket, interleaved, 5
  times each, the whole command from a fresh process.

Every command runs from a scratch folder (benchmarks.common.run_command), so a plain install of
tiltsweep serves as well as an editable one.

moto's server is a Python process on the same 2 cores as the sweep, so the bucket's figures are
those of a slow, busy store, not of S3's.

    python benchmarks/object_storage.py [ROUNDS]   # default 5 (~9 minutes here); writes benchmarks/results/object_storage.json
    python benchmarks/object_storage.py --table benchmarks/results/object_storage.json   # its two README tables
"""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tests' S3 server
sys.path.append(str(ROOT))  # after the installed tiltsweep: `benchmarks` only

from benchmarks.common import interleaved, markdown_table, median, run_command, save, tables_asked  # noqa: E402
from benchmarks.scale import GRID  # noqa: E402
from object_store import S3Server  # noqa: E402


STATUS_REPEATS = 5


def tiltsweep(*args: str) -> list[str]:
    return [sys.executable, "-m", "tiltsweep", *args]


def timed_run(command: list[str], timeout: float = 900) -> float:
    """The command's wall time, from a fresh process in a scratch folder; it must succeed."""
    done = run_command(command, timeout)
    assert done["exit"] == 0, f"{command}: exit {done['exit']}{' (timed out)' if done['timed_out'] else ''}\n{done['stdout'][-2000:]}{done['stderr'][-2000:]}"
    return done["seconds"]


def sweep_seconds(out: str) -> float:
    """The quickstart from scratch into `out` (a fresh folder or prefix each time)."""
    return timed_run(tiltsweep("run", str(ROOT / "grids" / "quickstart.yaml"), "--out", out, "--no-plot"))


def tables(report: dict) -> str:
    """benchmarks/README.md's section 13 tables: the quickstart's runs, then `status`'s, each run's seconds and their median."""
    def rows(measured: dict, s3_name: str, digits: int) -> list[list]:
        return [[s3_name if name == "S3 (moto)" else name, ", ".join(f"{s:.{digits}f}" for s in numbers["seconds"]), f"{numbers['median']:.{digits}f}"]
                for name, numbers in measured.items() if isinstance(numbers, dict)]

    return (markdown_table(["quickstart run", "seconds", "median"], rows(report["quickstart_sweep"], "S3 (moto on 127.0.0.1)", 1)) + "\n\n"
            + markdown_table(["results directory", "seconds", "median"], rows(report["status_10000_points"], "S3 (moto)", 2)))


def main() -> None:
    if files := tables_asked():
        print(tables(files[0]))
        return
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    server = S3Server()
    os.environ.update(server.env)
    try:
        bucket = server.bucket()
        with tempfile.TemporaryDirectory(prefix="tiltsweep-objects-") as scratch:
            scratch = Path(scratch)
            count = itertools.count()
            samples = interleaved({"local disk": lambda: sweep_seconds(str(scratch / f"local-{next(count)}")),
                                   "S3 (moto)": lambda: sweep_seconds(f"s3://{bucket}/sweep-{next(count)}")}, rounds)
            grid = scratch / "status.yaml"
            grid.write_text(GRID.replace("name: scale", "name: status").replace("SEEDS", str(list(range(100)))))
            built = timed_run(tiltsweep("run", str(grid), "--out", str(scratch), "--no-plot"))
            import pyarrow.fs as pafs

            store, base = pafs.FileSystem.from_uri(f"s3://{bucket}/big")
            started = time.perf_counter()
            pafs.copy_files(str(scratch / "status"), f"{base}/status", destination_filesystem=store, use_threads=True)
            copied = time.perf_counter() - started
            status = interleaved({"local disk": lambda: timed_run(tiltsweep("status", str(scratch / "status"))),
                                  "S3 (moto)": lambda: timed_run(tiltsweep("status", f"s3://{bucket}/big/status"))}, STATUS_REPEATS)
    finally:
        server.stop()
    sweep = {name: {"seconds": values, "median": median(values)} for name, values in samples.items()}
    within = [s3 / local for local, s3 in zip(samples["local disk"], samples["S3 (moto)"])]
    report = {
        "rounds": rounds,
        "quickstart_sweep": {**sweep, "ratio_s3_to_local": sweep["S3 (moto)"]["median"] / sweep["local disk"]["median"],
                             "ratio_within_each_round": within},
        "status_10000_points": {name: {"seconds": values, "median": median(values)} for name, values in status.items()},
        "10000_points_run_seconds": built, "copy_to_bucket_seconds": copied,
    }
    print(f"quickstart: local {sweep['local disk']['median']:.1f} s, S3 {sweep['S3 (moto)']['median']:.1f} s "
          f"(x{report['quickstart_sweep']['ratio_s3_to_local']:.2f}; within rounds " + ", ".join(f"{r:.2f}" for r in within) + ")")
    print("status of 10,000 points: " + ", ".join(f"{name} {median(values):.2f} s" for name, values in status.items()))
    print(tables(report))
    print(save("object_storage", report))


if __name__ == "__main__":
    main()
