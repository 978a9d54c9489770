"""benchmarks/README.md's tables are the ones the benchmark scripts print (`--table`) from their
committed results: none of those is typed, so none can drift from the numbers measured (the README
says which few tables, of earlier measurements not kept, are typed)."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

PRINTED = [
    ("trainer_throughput.py", ["trainer_throughput.json"]),
    ("object_storage.py", ["object_storage.json"]),
    ("mixed_precision.py", ["mixed_precision.json"]),
    ("warmup.py", ["warmup.json"]),
    ("paper_fidelity.py", ["paper_fidelity.json"]),
    ("pack_overhead.py", ["pack_overhead-before.json", "pack_overhead.json"]),
    ("pack_overhead.py", ["pack_overhead-s3-quick-before.json", "pack_overhead-s3-quick.json"]),
    ("accelerator.py", ["accelerator-cpu-quick.json"]),
    ("packs.py", ["packs-cpu.json"]),
    ("sweep_efficiency.py", ["sweep_efficiency.json"]),
    ("cnn_throughput.py", ["cnn_throughput.json"]),
    ("scale.py", ["scale-after.json"]),
    ("hessian_cost.py", ["hessian_cost.json"]),
    ("mlp_layout.py", ["mlp_layout.json"]),
    ("refine.py", ["refine.json"]),
    ("report.py", ["report.json"]),
]


@pytest.mark.parametrize("script, results", PRINTED, ids=[f"{script}:{results[-1]}" for script, results in PRINTED])
def test_the_readme_shows_the_table_its_script_prints(script, results, tmp_path):
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--table", *(str(BENCHMARKS / "results" / name) for name in results)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    tables = [block for block in done.stdout.strip().split("\n\n") if block.startswith("| ")]
    assert tables, done.stdout
    readme = (BENCHMARKS / "README.md").read_text()
    for table in tables:
        assert len(table.splitlines()) >= 3 and table in readme, f"benchmarks/README.md lacks the table {script} prints:\n{table}"
