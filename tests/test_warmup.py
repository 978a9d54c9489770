"""The warm-up: the first programs compiled while Ray starts (sweep.run.warmup), in a real
process, against the real workers of a real sweep."""

import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tiltsweep.sweep.grid import load_grid
from tiltsweep.sweep.run.warmup import CODE, SETTING, wanted, warming_up
from sweep_helpers import write_cifar_grid, write_grid


def test_a_warm_up_where_it_can_help_and_asked(tmp_path):
    cpu = load_grid(write_grid(tmp_path))
    gpu_grid = write_grid(tmp_path, name="on-gpu")
    gpu_grid.write_text(gpu_grid.read_text().replace("resources: {cpu: 1,", "resources: {cpu: 1, gpu: 1,"))
    gpu = load_grid(gpu_grid)
    in_a_bucket = load_grid(write_cifar_grid(tmp_path, "s3://bucket/cifar-10-batches-py"), check_data=False)
    cache = {"TILTSWEEP_COMPILE_CACHE": str(tmp_path / "cache")}
    assert wanted(gpu, None, cache) and not wanted(cpu, None, cache)  # auto: where compilations are long
    assert wanted(cpu, None, {**cache, SETTING: "on"}) and not wanted(gpu, None, {**cache, SETTING: "off"})
    assert not wanted(gpu, "10.0.0.1:6379", cache)  # a cluster's workers do not share this machine's cache
    assert not wanted(gpu, None, {"TILTSWEEP_COMPILE_CACHE": "off"})
    assert not wanted(in_a_bucket, None, {**cache, SETTING: "on"})  # its copy on this machine is the workers' to make


def warm_up_alone(spec, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TILTSWEEP_COMPILE_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-c", CODE], input=pickle.dumps(spec), env=env,
                          capture_output=True, timeout=300)


def cached_programs(cache: Path) -> set[str]:
    return {path.name for path in cache.glob("*/*-cache")}


@pytest.mark.slow
def test_the_workers_load_the_programs_the_warm_up_compiled(tmp_path):
    """Run alone to its end, the warm-up fills the cache with the first block's programs; the
    sweep's workers then compile nothing of their own: they load those programs."""
    grid = write_grid(tmp_path, epochs=1000)
    cache = tmp_path / "cache"
    done = warm_up_alone(load_grid(grid), cache)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    warmed = cached_programs(cache)
    assert any(name.startswith("jit__train_then_evaluate-") for name in warmed)
    assert any(name.startswith("jit__init_state-") for name in warmed)

    env = {**os.environ, "TILTSWEEP_COMPILE_CACHE": str(cache), SETTING: "off"}
    run = subprocess.run([sys.executable, "-m", "tiltsweep", "run", str(grid), "--out", str(tmp_path / "out"), "--no-plot"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "6/6 completed" in run.stdout
    assert cached_programs(cache) == warmed


def test_the_warm_up_is_stopped_when_the_sweep_ends(tmp_path, monkeypatch):
    monkeypatch.setenv(SETTING, "on")
    monkeypatch.setenv("TILTSWEEP_COMPILE_CACHE", str(tmp_path / "cache"))
    with warming_up(load_grid(write_grid(tmp_path)), None) as process:
        assert process.poll() is None  # compiling while Ray would start (its JAX alone takes over a second to load)
    assert process.returncode == -signal.SIGTERM  # stopped, not left behind
