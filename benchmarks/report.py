"""The interactive report's cost (issue 21): its size and drawing time, and what drawing it live
costs the sweep.

- Size: figures/index.html of the quickstart (given as a results directory, e.g. the one
  `tiltsweep run grids/quickstart.yaml` wrote) and of a 1,000-point sweep (scale.py's grid: 10 x 10
  (T, A) cells, 10 seeds, 20 epochs a point), and the seconds one live page takes to draw
  (analysis.report.write_live_index, median of 3).
- The live report's cost to the sweep: the quickstart (63 real trainings) run three times with the live
  report and three times with `--no-plot` (no live report), interleaved, each into a fresh directory;
  the run's own seconds (its outcome line, which leaves out the figures drawn at the end).

    python benchmarks/report.py [QUICKSTART_DIR]   # about 7 minutes on 2 cores
    python benchmarks/report.py --table benchmarks/results/report.json   # its two README tables
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import markdown_table, median, save, tables_asked
from scale import GRID, tiltsweep
from tiltsweep.analysis.report import write_live_index

POINTS = 1000
SWEEPS = {"quickstart": "quickstart (75 cells, 63 trainings, 121 evaluations each)",  # as the tables describe them
          f"{POINTS} points": f"{POINTS:,} points (10 x 10 (T, A) cells, {POINTS // 100} seeds, 3 evaluations each)"}
RUNS = {"live report": "with the live report", "no live report (--no-plot)": "without (`--no-plot`)"}


def page_cost(directory: Path) -> dict:
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        path = write_live_index(directory, live=False)
        seconds.append(time.perf_counter() - started)
    return {"index_html_megabytes": Path(path).stat().st_size / 1e6, "live_page_seconds": median(seconds)}


def run_seconds(grid: Path, out: Path, live: bool) -> float:
    done = subprocess.run(tiltsweep("run", str(grid), "--out", str(out), *([] if live else ["--no-plot"])),
                          capture_output=True, text=True, check=True)
    clock = re.search(r"run now, (?:(\d+):)?(\d+):(\d+)\)", done.stdout).groups()
    hours, minutes, secs = (int(part or 0) for part in clock)
    return 3600 * hours + 60 * minutes + secs


def tables(report: dict) -> str:
    """benchmarks/README.md's section 12 tables: each sweep's page (size, drawing time), then the quickstart's runs with and without the live report."""
    pages = [[described, f"{report[name]['index_html_megabytes']:.2f} MB", f"{report[name]['live_page_seconds']:.2f} s"]
             for name, described in SWEEPS.items() if name in report]
    times = report["sweep_seconds"]
    runs = [[RUNS.get(name, name), ", ".join(f"{s:g}" for s in seconds), f"{median(seconds):g}"] for name, seconds in times.items()]
    return (markdown_table(["sweep", "index.html", "one page drawn"], pages) + "\n\n"
            + markdown_table(["quickstart run", f"seconds ({len(next(iter(times.values())))} runs)", "median"], runs))


def main() -> None:
    if files := tables_asked():
        print(tables(files[0]))
        return
    report = {}
    if len(sys.argv) > 1:
        report["quickstart"] = page_cost(Path(sys.argv[1]))
        print("quickstart:", report["quickstart"], flush=True)
    with tempfile.TemporaryDirectory(prefix="tiltsweep-report-") as scratch:
        grid = Path(scratch) / "report-1000.yaml"
        grid.write_text(GRID.replace("name: scale", "name: report-1000").replace("SEEDS", str(list(range(POINTS // 100)))))
        assert run_seconds(grid, Path(scratch), live=False) > 0
        report[f"{POINTS} points"] = page_cost(Path(scratch) / "report-1000")
        print(report[f"{POINTS} points"], flush=True)
        quickstart = Path(__file__).resolve().parent.parent / "grids" / "quickstart.yaml"
        times = {"live report": [], "no live report (--no-plot)": []}
        for attempt in range(3):
            for name in times:
                times[name].append(run_seconds(quickstart, Path(scratch) / f"{attempt}-{name[:2]}", name == "live report"))
                print(name, times[name][-1], flush=True)
        report["sweep_seconds"] = times
        report["live_over_none"] = median(times["live report"]) / median(times["no live report (--no-plot)"])
    print(report)
    print(tables(report))
    print(save("report", report))


if __name__ == "__main__":
    main()
