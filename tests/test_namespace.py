"""Installing tiltsweep adds one import name, `tiltsweep`, and what a cluster's workers get is
that whole package."""

import json
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent

FIND = """
import importlib.util, json, tiltsweep, tiltsweep.sweep.commands.cli
found = {name: getattr(importlib.util.find_spec(name), "origin", None) for name in ("sweep", "analysis", "trainers")}
print(json.dumps({"tiltsweep": tiltsweep.__file__, "cli": tiltsweep.sweep.commands.cli.__file__, "others": found}))
"""


def run_python(code: str, cwd: Path, env: dict | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_installing_adds_the_one_import_name_tiltsweep(tmp_path):
    found = run_python(FIND, cwd=tmp_path)  # outside the repository: only what is installed
    assert Path(found["cli"]).is_relative_to(ROOT) or "site-packages" in found["cli"]
    for name, origin in found["others"].items():
        assert origin is None or not Path(origin).is_relative_to(ROOT), f"`import {name}` resolves to this project: {origin}"


def test_python_dash_m_tiltsweep_is_the_command(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tiltsweep", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("usage: tiltsweep")


def test_the_package_shipped_to_a_cluster_holds_every_part(tmp_path):
    import os

    from tiltsweep.sweep.run.executor import shipped_package

    shipped = Path(shipped_package())
    assert shipped.name == "tiltsweep"  # Ray's py_modules names the module after its folder
    env = {**os.environ, "PYTHONPATH": str(shipped.parent)}  # as a worker of the cluster has it
    found = run_python(FIND, cwd=tmp_path, env=env)
    assert Path(found["cli"]).is_relative_to(shipped) and Path(found["tiltsweep"]).is_relative_to(shipped)
    assert not list(shipped.rglob("__pycache__"))


def test_the_benchmarks_run_from_a_plain_install():
    """Every benchmark script's imports resolve from a plain (not editable) install of tiltsweep,
    one folder as pip installs it (the folder shipped to a cluster's workers is one), run from the
    repository's root: the repository's own tiltsweep/ folder (the package's root alone) must not
    hide the installed package."""
    import os

    from tiltsweep.sweep.run.executor import shipped_package

    installed = Path(shipped_package())
    env = {**os.environ, "PYTHONPATH": str(installed.parent)}
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        # sys.path as `python benchmarks/SCRIPT.py` starts with it: the script's folder first
        code = (f"import runpy, sys; sys.path[0] = {str(script.parent)!r}; runpy.run_path({str(script)!r}, run_name='imported'); "
                f"import tiltsweep; print(tiltsweep.__file__)")
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{script.name}: {done.stderr[-1500:]}"
        assert Path(done.stdout.splitlines()[-1]).is_relative_to(installed), script.name
