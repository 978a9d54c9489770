"""Peak resident memory of the driver (`tiltsweep run`) for a 1000-point grid whose trials train
only a few steps, so that orchestration is what is measured. The driver process alone is sampled
every 0.1 s (Ray's own processes and the workers are reported apart); also the wall time per point.

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
  seed: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
resources: {cpu: 1}
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        grid = Path(scratch) / "thousand.yaml"
        grid.write_text(GRID)
        started = time.perf_counter()
        driver = subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", str(grid), "--out", scratch, "--no-plot"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        process = psutil.Process(driver.pid)
        peak_driver = peak_others = 0
        while driver.poll() is None:
            try:
                peak_driver = max(peak_driver, process.memory_info().rss)
                others = sum(child.memory_info().rss for child in process.children(recursive=True))
                peak_others = max(peak_others, others)
            except psutil.Error:
                pass
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        output = driver.stdout.read()
    assert driver.returncode == 0, output
    report = {
        "points": 1000,
        "driver_peak_rss_mib": peak_driver / 2**20,
        "ray_and_workers_peak_rss_mib": peak_others / 2**20,
        "wall_seconds": seconds,
        "seconds_per_point": seconds / 1000,
        "last_lines": output.strip().splitlines()[-2:],
    }
    print(f"1000 points: driver peak RSS {report['driver_peak_rss_mib']:.0f} MiB (Ray and workers {report['ray_and_workers_peak_rss_mib']:.0f} MiB), "
          f"{seconds:.0f} s, {1000 * report['seconds_per_point']:.0f} ms per point")
    print(save("driver_memory", report))


if __name__ == "__main__":
    main()
