"""Shared pieces of the benchmarks: side-by-side timing and result files.

Machines here are shared and noisy, so every comparison runs its contenders interleaved in one
process (A, B, A, B, ...) and reports medians and their ratio, never a single time.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
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
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def results_folder() -> Path:
    """benchmarks/results/, or $BENCHMARK_RESULTS where that is set (a test's folder; $OUT on a lent device machine)."""
    out = Path(os.environ.get("BENCHMARK_RESULTS") or OUT)
    out.mkdir(parents=True, exist_ok=True)
    return out


def save(name: str, payload: dict) -> Path:
    """results_folder()/<name>.json."""
    path = results_folder() / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M"), **payload}, indent=1))
    return path


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table as benchmarks/README.md shows them: the header, its rule, a line a row."""
    line = lambda cells: "| " + " | ".join(str(cell) for cell in cells) + " |"
    return "\n".join([line(header), "|" + "---|" * len(header), *(line(row) for row in rows)])


def tables_asked() -> Optional[list[dict]]:
    """The JSON files named after `--table` on the command line, read; None where it has no `--table`
    (a script then measures; with it, it prints its README table from the files it names)."""
    if "--table" not in sys.argv:
        return None
    return [json.loads(Path(name).read_text()) for name in sys.argv[sys.argv.index("--table") + 1:]]


def run_command(command: list[str], timeout: float, env: Optional[dict] = None) -> dict:
    """Run `command` with a time limit, from a fresh scratch folder: never from the repository's
    root, whose tiltsweep/ folder (the package's root alone) would hide a plain, non-editable
    install of tiltsweep from `python -m tiltsweep` and from pytest (a relative path in `command`
    is therefore wrong: give paths absolute). The command runs in its own process group with its
    output in files (a process it leaves behind cannot hold a pipe open); past `timeout` seconds
    it gets SIGTERM (`tiltsweep run` stops its Ray and exits on it), and its group SIGKILL once
    it has exited, or 30 s later at most. Returns exit (the return code; negative: killed by that signal), timed_out, seconds, stdout, stderr."""
    with tempfile.TemporaryDirectory(prefix="tiltsweep-benchmark-") as scratch:
        out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
        started = time.perf_counter()
        with open(out, "w") as stdout, open(err, "w") as stderr:
            process = subprocess.Popen(command, cwd=scratch, env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        timed_out = False
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        seconds = time.perf_counter() - started
        try:
            os.killpg(process.pid, signal.SIGKILL)  # whatever of its group is left (nothing, after a clean exit)
        except (ProcessLookupError, PermissionError):
            pass
        if process.poll() is None:
            process.wait(timeout=30)
        return {"exit": process.returncode, "timed_out": timed_out,
                "seconds": seconds, "stdout": out.read_text(errors="replace"), "stderr": err.read_text(errors="replace")}


def in_each_dtype(script: str, measure: Callable[[str, int], object], repeats: int) -> Optional[dict]:
    """float32 and float64 measured each in its own process (JAX's 64-bit mode is process-wide).
    Run as `script --dtype D`, prints measure(D, repeats) as JSON and returns None; run plainly,
    runs `script` once per dtype and returns {dtype: what measure returned}."""
    if len(sys.argv) == 3 and sys.argv[1] == "--dtype":
        print(json.dumps(measure(sys.argv[2], repeats)))
        return None
    results = {}
    for dtype in ("float32", "float64"):
        out = subprocess.run([sys.executable, script, "--dtype", dtype], capture_output=True, text=True, check=True).stdout
        results[dtype] = json.loads(out.strip().splitlines()[-1])
    return results
