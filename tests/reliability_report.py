"""Run the reliability tests and print README.md's table of what they injected and checked.

    python tests/reliability_report.py                # runs them
    python tests/reliability_report.py TALLY.json     # the tally of a run made with TILTSWEEP_TALLY=TALLY.json
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
    if len(sys.argv) > 1:
        print_table(json.loads(Path(sys.argv[1]).read_text()))
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        tally_path = Path(scratch) / "tally.json"
        env = {**os.environ, "TILTSWEEP_TALLY": str(tally_path)}
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "test_reliability.py"),
                              str(HERE / "test_grid.py"), "-k", "reliab or bad"], env=env, cwd=HERE.parent)
        entries = json.loads(tally_path.read_text()) if tally_path.exists() else []
    print_table(entries)
    print(f"\npytest exit code: {run.returncode}")
    return run.returncode


def print_table(entries: list[dict]) -> None:
    counted = ("faults", "points", "rows_lost", "rows_duplicated", "resumed")  # counted by conftest.Tally
    rows = defaultdict(lambda: [0] * (1 + len(counted)))
    for entry in entries:
        row = rows[entry["test"]]
        row[0] += 1
        for index, name in enumerate(counted, start=1):
            row[index] += entry[name]
    print("| fault | tests | faults injected | points checked | rows lost | rows duplicated | resumed from checkpoints |")
    print("|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(map(str, row)) + " |")
    totals = [sum(row[i] for row in rows.values()) for i in range(1 + len(counted))]
    print("| **all** | " + " | ".join(f"**{total}**" if index in (3, 4) else str(total) for index, total in enumerate(totals)) + " |")


if __name__ == "__main__":
    sys.exit(main())
