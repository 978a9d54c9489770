"""Run the reliability tests and print README.md's table of what they injected and checked.

    python tests/reliability_report.py
"""

import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        tally_path = Path(scratch) / "tally.json"
        env = {**os.environ, "TILTSWEEP_TALLY": str(tally_path)}
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "test_reliability.py"),
                              str(HERE / "test_grid.py"), "-k", "reliab or bad"], env=env, cwd=HERE.parent)
        entries = json.loads(tally_path.read_text()) if tally_path.exists() else []
    rows = defaultdict(lambda: [0, 0, 0, 0])
    for entry in entries:
        row = rows[entry["test"]]
        row[0] += 1
        row[1] += entry["faults"]
        row[2] += entry["points"]
        row[3] += entry["rows_lost"]
    print("| fault | tests | faults injected | points checked | rows lost |")
    print("|---|---|---|---|---|")
    for name, (tests, faults, points, lost) in rows.items():
        print(f"| {name} | {tests} | {faults} | {points} | {lost} |")
    totals = [sum(row[i] for row in rows.values()) for i in range(4)]
    print(f"| **all** | {totals[0]} | {totals[1]} | {totals[2]} | **{totals[3]}** |")
    print(f"\npytest exit code: {run.returncode}")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
