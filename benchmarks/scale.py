"""A sweep of 10,000 points (issue 17's scale case): points of 20 full-batch epochs on a small
spiral, so that what is measured is tiltsweep's own work around the training, not the training.

Measured, one after another on the same results directory:
- `tiltsweep run`: its wall time, the wall time per point (its orchestration: the training
  itself is ~1 ms a point), and the peak resident memory of the driver process (sampled every
  0.1 s; Ray's processes and the workers are reported apart), at 1/10 of the points and at all;
- `tiltsweep status DIR` and `tiltsweep plot DIR`, wall time of each command;
- the results directory: its size and its number of files.

And the same at 1/10 of the points with long curves: 4,000 epochs, 400 evaluations a point, so
that what the driver holds of the curves shows.

    python benchmarks/scale.py [POINTS]   # default 10000; writes benchmarks/results/scale.json
    python benchmarks/scale.py --table benchmarks/results/scale-after.json   # its README table (section 7's second)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after the installed tiltsweep: the repository's tiltsweep/ holds its root alone

from benchmarks.common import markdown_table, save, tables_asked  # noqa: E402

GRID = """\
name: scale
data: {name: spiral, points_per_class: 20, classes: 3}
model: {name: mlp, width: 4}
optimizer: {name: sgd, learning_rate: 1.0, batch_size: full}
training: {epochs: 20, eval_every: 10}
loss: {amplitude: 1, period: 10}
grid:
  amplitude: [2, 3, 5, 7, 10, 20, 30, 50, 70, 100]
  period: [2, 3, 5, 7, 10, 20, 30, 50, 70, 100]
  seed: SEEDS
resources: {cpu: 1}
"""


def tiltsweep(*args: str) -> list[str]:
    return [sys.executable, "-m", "tiltsweep", *args]


def run_sampled(command: list[str], log_path: Path) -> dict:
    """Run the driver to its end, sampling its memory and its children's."""
    started = time.perf_counter()
    with open(log_path, "w") as log:
        driver = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
        process = psutil.Process(driver.pid)
        peak_driver = peak_others = 0
        while driver.poll() is None:
            try:
                peak_driver = max(peak_driver, process.memory_info().rss)
                peak_others = max(peak_others, sum(child.memory_info().rss for child in process.children(recursive=True)))
            except psutil.Error:
                pass
            time.sleep(0.1)
    output = log_path.read_text()
    assert driver.returncode == 0, output[-3000:]
    return {"wall_seconds": time.perf_counter() - started, "driver_peak_rss_mib": peak_driver / 2**20,
            "ray_and_workers_peak_rss_mib": peak_others / 2**20, "last_line": output.strip().splitlines()[-1]}


def timed_command(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def directory_size(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def measure(points: int, scratch: Path, epochs: int = 20) -> dict:
    name = f"scale-{points}-{epochs}"
    grid = scratch / f"{name}.yaml"
    grid.write_text(GRID.replace("name: scale", f"name: {name}").replace("SEEDS", str(list(range(points // 100))))
                    .replace("epochs: 20,", f"epochs: {epochs},"))
    run = run_sampled(tiltsweep("run", str(grid), "--out", str(scratch), "--no-plot"), scratch / f"run-{name}.log")
    directory = scratch / name
    files, size = directory_size(directory)
    return {
        "points": points, "epochs": epochs, **run, "ms_per_point": 1000 * run["wall_seconds"] / points,
        "status_seconds": timed_command(tiltsweep("status", str(directory))),
        "plot_seconds": timed_command(tiltsweep("plot", str(directory))),
        "files": files, "megabytes": size / 1e6,
    }


def table(report: dict) -> str:
    """benchmarks/README.md's section 7 table of one run: each sweep's wall time (and, at the most
    points, its time a point), driver peak, `status` and `plot`, and its results directory."""
    sweeps = {name: row for name, row in report.items() if isinstance(row, dict) and "points" in row}
    most = max(row["points"] for row in sweeps.values())
    rows = [["`tiltsweep run` wall"], ["driver peak RSS"], ["`tiltsweep status`, `plot`"], ["results directory"]]
    for row in sweeps.values():
        wall = f"{row['wall_seconds']:.0f} s" + (f" ({row['ms_per_point']:.1f} ms a point)" if row["points"] == most else "")
        for cells, cell in zip(rows, [wall, f"{row['driver_peak_rss_mib']:.0f} MiB", f"{row['status_seconds']:.1f} s, {row['plot_seconds']:.1f} s",
                                      f"{row['files']:,} files, {row['megabytes']:.0f} MB"]):
            cells.append(cell)
    header = [" ".join(f"{int(word):,}" if word.isdigit() else word for word in name.split()) for name in sweeps]
    return markdown_table(["", *header], rows)


def main() -> None:
    if files := tables_asked():
        print(table(files[0]))
        return
    points = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory(prefix="tiltsweep-scale-") as scratch:
        report = {f"{n} points": measure(n, Path(scratch)) for n in (points // 10, points)}
        report[f"{points // 10} points of 4000 epochs"] = measure(points // 10, Path(scratch), epochs=4000)
    small, big = report[f"{points // 10} points"], report[f"{points} points"]
    report["driver_kib_per_point"] = 1024 * (big["driver_peak_rss_mib"] - small["driver_peak_rss_mib"]) / (big["points"] - small["points"])
    for row in (small, big, report[f"{points // 10} points of 4000 epochs"]):
        print(f"{row['points']} points of {row['epochs']} epochs: run {row['wall_seconds']:.0f} s ({row['ms_per_point']:.1f} ms per point), driver peak "
              f"{row['driver_peak_rss_mib']:.0f} MiB (Ray and workers {row['ray_and_workers_peak_rss_mib']:.0f} MiB); status "
              f"{row['status_seconds']:.1f} s, plot {row['plot_seconds']:.1f} s; {row['files']} files, {row['megabytes']:.0f} MB")
    print(f"driver memory per point: {report['driver_kib_per_point']:.1f} KiB")
    print(table(report))
    print(save(os.environ.get("SCALE_RESULT", "scale"), report))


if __name__ == "__main__":
    main()
