"""The warm-up (sweep.run.warmup) against none: `tiltsweep run --no-plot` of a grid with an empty
compilation cache (the first sweep of its shapes on a machine, where the warm-up can help),
TILTSWEEP_WARMUP=on and off interleaved; medians of the wall time (Ray's start and shut-down
included) and of the time from the start to the first record written (its `written`).

    python benchmarks/warmup.py [GRID] [--rounds N]    # default: grids/quickstart.yaml, 3 rounds
    python benchmarks/warmup.py --table benchmarks/results/warmup.json   # its README table
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after the installed tiltsweep: the repository's tiltsweep/ holds its root alone

from benchmarks.common import interleaved, markdown_table, median, run_command, save, tables_asked  # noqa: E402
from tiltsweep.sweep.store import ResultsDir  # noqa: E402

REPOSITORY = Path(__file__).resolve().parent.parent


def one_run(grid: Path, scratch: Path, setting: str, runs: list) -> float:
    """One cold run with the warm-up `setting`; returns its wall time, and keeps the first
    record's time after the start in `runs`."""
    tag = f"{setting}-{len(runs)}"
    env = {**os.environ, "TILTSWEEP_WARMUP": setting, "TILTSWEEP_COMPILE_CACHE": str(scratch / f"cache-{tag}")}
    started = time.time()
    result = run_command([sys.executable, "-m", "tiltsweep", "run", str(grid), "--out", str(scratch / f"out-{tag}"), "--no-plot"],
                         timeout=600, env=env)
    if result["exit"] != 0:
        raise SystemExit(f"tiltsweep run failed ({result['exit']}): {result['stderr'][-2000:]}")
    results = ResultsDir(next((scratch / f"out-{tag}").iterdir()))
    written = [record.written for _, record in results.records.all(on_corrupt=lambda error: None).values()]
    runs.append({"setting": setting, "seconds": result["seconds"], "first_record_s": min(written) - started})
    return result["seconds"]


def table(report: dict) -> str:
    """benchmarks/README.md's section 17 table: each round's wall time / first record, on and off, and their medians."""
    def cell(wall: float, first: float) -> str:
        return f"{wall:.1f} s / {first:.1f} s"

    by_setting = {setting: [run for run in report["runs"] if run["setting"] == setting] for setting in ("on", "off")}
    rows = [[index + 1, *(cell(runs[index]["seconds"], runs[index]["first_record_s"]) for runs in by_setting.values())]
            for index in range(report["rounds"])]
    rows.append(["median", *(cell(report["summary"][setting]["wall_s"], report["summary"][setting]["first_record_s"]) for setting in by_setting)])
    return markdown_table(["round", "warm-up on", "warm-up off"], rows)


def main() -> None:
    if files := tables_asked():
        print(table(files[0]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid", nargs="?", default=str(REPOSITORY / "grids" / "quickstart.yaml"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    grid = Path(args.grid).resolve()
    runs: list = []
    with tempfile.TemporaryDirectory(prefix="warmup-benchmark-") as scratch:
        samples = interleaved({setting: (lambda s=setting: one_run(grid, Path(scratch), s, runs)) for setting in ("on", "off")}, args.rounds)
    first = {setting: median([run["first_record_s"] for run in runs if run["setting"] == setting]) for setting in ("on", "off")}
    summary = {setting: {"wall_s": median(samples[setting]), "first_record_s": first[setting]} for setting in samples}
    for setting, numbers in summary.items():
        print(f"warm-up {setting:3s}: wall {numbers['wall_s']:.1f} s, first record after {numbers['first_record_s']:.1f} s")
    report = {"grid": grid.name, "rounds": args.rounds, "summary": summary, "runs": runs}
    print(table(report))
    print(save("warmup", report))


if __name__ == "__main__":
    main()
