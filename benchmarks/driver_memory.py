"""Peak resident memory of the driver (`tiltsweep run`) for a 1000-point grid whose trials train
only a few steps, so that orchestration is what is measured, beside a 100-point grid to separate
the per-point cost from the fixed one. The driver process alone is sampled every 0.1 s (Ray's own
processes and the workers are reported apart); also the wall time per point.

    python benchmarks/driver_memory.py           # writes benchmarks/results/driver_memory.json
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import save  # noqa: E402

GRID = """\
name: thousand
data: {name: spiral, points_per_class: 20, classes: 3}
model: {name: mlp, width: 4}
optimizer: {name: sgd, learning_rate: 1.0, batch_size: full}
training: {epochs: 20, eval_every: 10}
loss: {amplitude: 1, period: 10}
grid:
  amplitude: [1, 2, 3, 5, 7, 10, 20, 30, 50, 70]
  period: [2, 3, 5, 7, 10, 20, 30, 50, 70, 100]
  seed: SEEDS
resources: {cpu: 1}
"""


def measure(points: int) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        grid = Path(scratch) / "thousand.yaml"
        grid.write_text(GRID.replace("SEEDS", str(list(range(points // 100)))))
        started = time.perf_counter()
        log = open(Path(scratch) / "driver.log", "w+")
        driver = subprocess.Popen([sys.executable, "-m", "tiltsweep", "run", str(grid), "--out", scratch, "--no-plot"],
                                  stdout=log, stderr=subprocess.STDOUT, text=True)
        process = psutil.Process(driver.pid)
        peak_driver = peak_others = 0
        while driver.poll() is None:
            try:
                peak_driver = max(peak_driver, process.memory_info().rss)
                peak_others = max(peak_others, sum(child.memory_info().rss for child in process.children(recursive=True)))
            except psutil.Error:
                pass
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        log.seek(0)
        output = log.read()
    assert driver.returncode == 0, output
    return {
        "points": points,
        "driver_peak_rss_mib": peak_driver / 2**20,
        "ray_and_workers_peak_rss_mib": peak_others / 2**20,
        "wall_seconds": seconds,
        "seconds_per_point": seconds / points,
        "last_line": output.strip().splitlines()[-1],
    }


def main() -> None:
    report = {f"{n} points": measure(n) for n in (100, 1000)}
    small, big = report["100 points"], report["1000 points"]
    report["driver_mib_per_point"] = (big["driver_peak_rss_mib"] - small["driver_peak_rss_mib"]) / 900
    for row in (small, big):
        print(f"{row['points']} points: driver peak RSS {row['driver_peak_rss_mib']:.0f} MiB (Ray and workers "
              f"{row['ray_and_workers_peak_rss_mib']:.0f} MiB), {row['wall_seconds']:.0f} s, {1000 * row['seconds_per_point']:.0f} ms per point")
    print(f"driver memory per point: {1024 * report['driver_mib_per_point']:.0f} KiB")
    print(save("driver_memory", report))


if __name__ == "__main__":
    main()
