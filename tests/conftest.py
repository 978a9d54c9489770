"""Shared fixtures: small real inputs written to disk the way users have them."""

from __future__ import annotations

import pickle
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


@pytest.fixture(scope="session", autouse=True)
def session_compile_cache(tmp_path_factory):
    """Ray workers started by the tests (and drivers in subprocesses) share one persistent
    compilation cache of their own, not the user's; `TILTSWEEP_COMPILE_CACHE=off` keeps it off
    (for runs under a restricted instruction set: every program compiled for it)."""
    import os

    from tiltsweep.trainers.compile_cache import OFF

    if os.environ.get("TILTSWEEP_COMPILE_CACHE", "").strip().lower() not in OFF:
        os.environ["TILTSWEEP_COMPILE_CACHE"] = str(tmp_path_factory.mktemp("xla-cache"))
    yield


@pytest.fixture(scope="session")
def tally():
    """Reliability tests report what they did: tally(test=..., faults=n, points=n, rows_lost=n).
    With TILTSWEEP_TALLY=path set, the session writes the entries there as JSON
    (benchmarks/reliability.py uses it for README.md)."""
    import json
    import os

    entries = []
    yield lambda **entry: entries.append(entry)
    path = os.environ.get("TILTSWEEP_TALLY")
    if path:
        with open(path, "w") as handle:
            json.dump(entries, handle, indent=1)
