"""Shared fixtures: small real inputs written to disk the way users have them."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest


def write_cifar10_dir(root: Path, per_batch: int = 40, seed: int = 0) -> Path:
    """A miniature `cifar-10-batches-py`: five training batches and a test batch in the real
    pickle format ({b"data": uint8 (N, 3072) channel-major, b"labels": [int]}). Each class has
    its own mean colour, so a model can learn something from it."""
    rng = np.random.RandomState(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = np.arange(per_batch) % 10
        rng.shuffle(labels)
        colours = (labels[:, None] * 25 + 10).astype(np.float64)
        data = np.clip(colours + rng.randn(per_batch, 3072) * 20, 0, 255).astype(np.uint8)
        with open(root / name, "wb") as handle:
            pickle.dump({b"data": data, b"labels": labels.tolist(), b"batch_label": name.encode()}, handle)
    return root


@pytest.fixture
def cifar_dir(tmp_path) -> Path:
    return write_cifar10_dir(tmp_path / "cifar-10-batches-py")


def spiral_config(**overrides) -> dict:
    """A small full-batch spiral trial; keyword sections replace the defaults."""
    config = {
        "data": {"name": "spiral", "points_per_class": 50, "classes": 3},
        "model": {"name": "mlp", "width": 20},
        "optimizer": {"name": "sgd", "learning_rate": 1.0, "batch_size": "full"},
        "training": {"epochs": 600, "eval_every": 100},
        "loss": {"amplitude": 10, "period": 200},
        "seed": 0,
    }
    config.update(overrides)
    return config


def float32_rtol(cpu: float, accelerator: float) -> float:
    """A float32 comparison's relative tolerance on the backend JAX runs on: `cpu` on a CPU,
    `accelerator` on a GPU or TPU, whose math libraries round transcendental functions (sin,
    exp, ...) otherwise. Never looser on the CPU."""
    import jax

    return cpu if jax.default_backend() == "cpu" else accelerator


@pytest.fixture
def x64():
    """JAX in float64 for the test, and back to float32 after it."""
    import jax

    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


@pytest.fixture(scope="session", autouse=True)
def session_ray_token():
    """The local Rays the tests start (and their drivers in subprocesses) take this session's
    token from the environment, so that they neither read nor write the user's ~/.ray/auth_token,
    and two of them starting at once on a fresh machine do not race to create it."""
    import secrets

    if "RAY_AUTH_TOKEN" not in os.environ:
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    yield


@pytest.fixture(scope="session", autouse=True)
def session_compile_cache(tmp_path_factory):
    """Ray workers started by the tests (and drivers in subprocesses) share one persistent
    compilation cache of their own, not the user's; `TILTSWEEP_COMPILE_CACHE=off` keeps it off
    (for runs under a restricted instruction set: every program compiled for it)."""
    from tiltsweep.trainers.compilation.cache import OFF

    if os.environ.get("TILTSWEEP_COMPILE_CACHE", "").strip().lower() not in OFF:
        cache = shared_temp(tmp_path_factory) / "xla-cache"
        cache.mkdir(exist_ok=True)
        os.environ["TILTSWEEP_COMPILE_CACHE"] = str(cache)
    yield


def shared_temp(tmp_path_factory) -> Path:
    """The test run's temporary folder, shared by its pytest-xdist workers where it has several."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


class Tally:
    """What the reliability tests did and what their results directories show, for README.md's
    table (tests/reliability_report.py). Every figure but the test's own actions is counted from
    the directory, never typed:
    - faults: `injected` (what the test itself did: a SIGKILL, a damaged file), plus the worker
      faults that fired (the marker files in <results>/.faults, holds left out) and the points
      that diverged;
    - points: the points of the grid saved in the directory;
    - rows lost: those points without a row in summary.parquet;
    - rows duplicated: rows of summary.parquet, and of curves.parquet by (trial_id, step), beyond
      the first of each;
    - resumed: the points whose final attempt continued from a checkpoint."""

    def __init__(self):
        self.entries: list[dict] = []

    def sweep(self, test: str, directory, injected: int = 0) -> dict:
        """directory: a results directory's path or URI, read through the store."""
        from tiltsweep.sweep.grid import load_grid
        from tiltsweep.sweep.store import ResultsDir

        results = ResultsDir(directory)
        expected = {point.trial_id for point in load_grid(results.grid_shown(), text=results.grid_text(), check_data=False).points}
        summary, curves = results.tables.summary(), results.tables.curves()
        markers = results.faults_folder().iterdir() if results.faults_folder().exists() else []
        fired = sum(not marker.name.startswith("hold-") for marker in markers)  # a hold only times the test
        entry = {
            "test": test,
            "faults": injected + fired + int((summary["status"] == "diverged").sum()),
            "points": len(expected),
            "rows_lost": len(expected - set(summary["trial_id"])),
            "rows_duplicated": int(summary["trial_id"].duplicated().sum() + curves.duplicated(["trial_id", "step"]).sum()),
            "resumed": int((summary["resumed_from_epoch"] > 0).sum()),
        }
        self.entries.append(entry)
        return entry

    def refusal(self, test: str) -> None:
        """A bad input refused before anything ran: one fault, no points."""
        self.entries.append({"test": test, "faults": 1, "points": 0, "rows_lost": 0, "rows_duplicated": 0, "resumed": 0})


@pytest.fixture(scope="session")
def tally(request):
    """The session's Tally; with TILTSWEEP_TALLY=path set, its entries are written there as JSON
    (by pytest-xdist's controller, from every worker's, where the tests ran in several)."""
    recorder = Tally()
    yield recorder
    workeroutput = getattr(request.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: its entries go to the controller
        workeroutput["tally"] = recorder.entries
    else:
        write_tally(recorder.entries)


WORKERS_TALLIES: list[dict] = []  # on pytest-xdist's controller: the entries its workers sent


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    WORKERS_TALLIES.extend(node.workeroutput.get("tally", []))


def pytest_sessionfinish(session):
    if WORKERS_TALLIES:
        write_tally(WORKERS_TALLIES)


def write_tally(entries: list[dict]) -> None:
    import json

    path = os.environ.get("TILTSWEEP_TALLY")
    if path:
        with open(path, "w") as handle:
            json.dump(entries, handle, indent=1)


@pytest.fixture(scope="session")
def faulty_results(tmp_path_factory) -> Path:
    """faulty_sweep's results directory, for the figure and report tests. The sweep runs once a
    test run (under pytest -n, in the first worker that asks, the others waiting on its lock), and
    each worker draws its figures into a copy of its own."""
    from filelock import FileLock

    from faulty_sweep import run_faulty_sweep

    shared = shared_temp(tmp_path_factory)
    with FileLock(shared / "faulty-sweep.lock"):
        done = shared / "faulty-sweep.done"
        if not done.exists():
            (shared / "faulty-sweep").mkdir(exist_ok=True)
            done.write_text(str(run_faulty_sweep(shared / "faulty-sweep")))
        swept = Path(done.read_text())
    copy = tmp_path_factory.mktemp("figures") / swept.name
    shutil.copytree(swept, copy)
    return copy
