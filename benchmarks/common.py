"""Shared pieces of the benchmarks: side-by-side timing and result files.

Machines here are shared and noisy, so every comparison runs its contenders interleaved in one
process (A, B, A, B, ...) and reports medians and their ratio, never a single time.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Optional

OUT = Path(__file__).resolve().parent / "results"


def interleaved(contenders: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Call each contender `repeats` times, round-robin; each returns the measured quantity."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            samples[name].append(run())
    return samples


def median(values) -> float:
    return statistics.median(values)


def timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def machine() -> dict:
    import os

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def save(name: str, payload: dict) -> Path:
    """benchmarks/results/<name>.json, or in $BENCHMARK_RESULTS where that is set (a test's folder)."""
    out = Path(os.environ.get("BENCHMARK_RESULTS") or OUT)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M"), **payload}, indent=1))
    return path


def in_each_dtype(script: str, measure: Callable[[str, int], object], repeats: int) -> Optional[dict]:
    """float32 and float64 measured each in its own process (JAX's 64-bit mode is process-wide).
    Run as `script --dtype D`, prints measure(D, repeats) as JSON and returns None; run plainly,
    runs `script` once per dtype and returns {dtype: what measure returned}."""
    import subprocess
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "--dtype":
        print(json.dumps(measure(sys.argv[2], repeats)))
        return None
    results = {}
    for dtype in ("float32", "float64"):
        out = subprocess.run([sys.executable, script, "--dtype", dtype], capture_output=True, text=True, check=True).stdout
        results[dtype] = json.loads(out.strip().splitlines()[-1])
    return results
