"""benchmarks/README.md's tables are the ones the benchmark scripts print (`--table`) from their
committed results: none of those is typed, so none can drift from the numbers measured (the README
says which few tables, of earlier measurements not kept, are typed)."""

import json
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


# Every script's `--table` in one process (each its own would start Python and import JAX again),
# run as `python SCRIPT --table FILES...` runs it, from a scratch folder; what each printed, as JSON.
PRINT_ALL = """
import contextlib, io, json, runpy, sys
sys.path.insert(0, sys.argv[1])  # as a script's own folder is, for those that import `common`
printed = []
for script, files in json.loads(sys.argv[2]):
    sys.argv = [script, "--table", *files]
    with contextlib.redirect_stdout(io.StringIO()) as out:
        runpy.run_path(script, run_name="__main__")
    printed.append(out.getvalue())
print(json.dumps(printed))
"""


@pytest.fixture(scope="module")
def printed(tmp_path_factory) -> list[str]:
    asked = [(str(BENCHMARKS / script), [str(BENCHMARKS / "results" / name) for name in results]) for script, results in PRINTED]
    done = subprocess.run([sys.executable, "-c", PRINT_ALL, str(BENCHMARKS), json.dumps(asked)], cwd=tmp_path_factory.mktemp("tables"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("index", range(len(PRINTED)), ids=[f"{script}:{results[-1]}" for script, results in PRINTED])
def test_the_readme_shows_the_table_its_script_prints(printed, index):
    script = PRINTED[index][0]
    tables = [block for block in printed[index].strip().split("\n\n") if block.startswith("| ")]
    assert tables, printed[index]
    readme = f"\n\n{(BENCHMARKS / 'README.md').read_text().strip()}\n\n"
    for table in tables:  # whole: no typed row before or after it
        assert len(table.splitlines()) >= 3 and f"\n\n{table}\n\n" in readme, f"benchmarks/README.md lacks the table {script} prints:\n{table}"


def test_every_script_that_prints_a_table_is_checked():
    printing = {path.name for path in BENCHMARKS.glob("*.py") if "tables_asked()" in path.read_text()} - {"common.py"}
    assert printing == {script for script, _ in PRINTED}
