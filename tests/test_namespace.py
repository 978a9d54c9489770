"""Installing tiltsweep adds one import name, `tiltsweep`, and what a cluster's workers get is
that whole package."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.fixture(scope="module")
def plain_install(tmp_path_factory) -> tuple[str, dict]:
    """A Python that has tiltsweep as a plain (not editable) install, one folder as pip installs it
    (the folder shipped to a cluster's workers is one), and the rest of this environment's
    packages: a virtual environment whose one .pth file names this one's site-packages, so that
    their .pth files (the editable install's finder among them) do not run. Every process it
    starts (sys.executable) is the same. Returns its python and the environment to run it in."""
    import os
    import sysconfig

    from tiltsweep.sweep.run.executor import shipped_package

    venv = tmp_path_factory.mktemp("plain") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "this-environment.pth").write_text("".join(f"{path}\n" for path in sorted(ours)))
    return python, {**os.environ, "PYTHONPATH": str(Path(shipped_package()).parent)}


def test_the_benchmarks_run_from_a_plain_install(plain_install):
    """Every benchmark script's imports resolve from a plain install of tiltsweep, run from the
    repository's root: the repository's own tiltsweep/ folder (the package's root alone) must not
    hide the installed package."""
    python, env = plain_install
    installed = Path(env["PYTHONPATH"])
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        # sys.path as `python benchmarks/SCRIPT.py` starts with it: the script's folder first
        code = (f"import runpy, sys; sys.path[0] = {str(script.parent)!r}; runpy.run_path({str(script)!r}, run_name='imported'); "
                f"import tiltsweep; print(tiltsweep.__file__)")
        done = subprocess.run([python, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{script.name}: {done.stderr[-1500:]}"
        assert Path(done.stdout.splitlines()[-1]).is_relative_to(installed), script.name


def test_the_benchmarks_commands_run_a_plain_install_from_the_repository_root(plain_install):
    """The commands the benchmarks start (`python -m tiltsweep`, and pytest on the repository's
    tests, in benchmarks/accelerator.py and object_storage.py) work from a plain install when the
    script is started from the repository's root, where `python -m` would find the repository's
    tiltsweep/ folder first: they run from a scratch folder (benchmarks.common.run_command)."""
    python, env = plain_install
    trapped = subprocess.run([python, "-m", "tiltsweep", "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert trapped.returncode != 0 and "No module named 'tiltsweep.sweep'" in trapped.stderr  # the trap is there to avoid
    code = f"""
import json, runpy, sys
sys.path[0] = {str(ROOT / "benchmarks")!r}
accelerator = runpy.run_path({str(ROOT / "benchmarks" / "accelerator.py")!r}, run_name="imported")
storage = runpy.run_path({str(ROOT / "benchmarks" / "object_storage.py")!r}, run_name="imported")
command = accelerator["run_command"]([sys.executable, "-m", "tiltsweep", "--help"], 60)
storage["timed_run"](storage["tiltsweep"]("--help"), 60)  # asserts that it succeeds
tests = accelerator["tests"](["tests/test_loss.py::test_amplitude_one_is_softmax_cross_entropy"], 120)
print(json.dumps({{"command": command, "tests": tests}}))
"""
    done = subprocess.run([python, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["command"]["exit"] == 0 and found["command"]["stdout"].startswith("usage: tiltsweep"), found["command"]["stderr"][-1500:]
    assert found["tests"]["exit"] == 0 and "1 passed" in found["tests"]["summary"], found["tests"]


def test_the_warm_up_starts_from_a_plain_install_in_the_repositorys_root(plain_install, tmp_path):
    """The warm-up process (sweep.run.warmup) of a `tiltsweep run` started from the repository's
    root imports the installed package, not the root's tiltsweep/ folder."""
    from tiltsweep.sweep.grid import load_grid
    from sweep_helpers import warm_up_alone, write_grid

    python, env = plain_install
    done = warm_up_alone(load_grid(write_grid(tmp_path, epochs=1000)), tmp_path / "cache", python, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert list((tmp_path / "cache").glob("*/jit__train_then_evaluate-*-cache"))
