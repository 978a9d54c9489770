"""The warm-up: the first programs compiled while Ray starts (sweep.run.warmup), in a real
process, against the real workers of a real sweep."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tiltsweep.sweep.grid import load_grid
from tiltsweep.sweep.run.runner import results_dir_for
from tiltsweep.sweep.run.warmup import CODE, SETTING, wanted, warming_up
from tiltsweep.sweep.store import ResultsDir
from sweep_helpers import Driver, warm_up_alone, write_cifar_grid, write_grid


def with_resources(grid: Path, resources: str) -> Path:
    grid.write_text(grid.read_text().replace("resources: {cpu: 1,", f"resources: {{cpu: 1, {resources},"))
    return grid


def test_a_warm_up_where_it_can_help_and_asked(tmp_path):
    cpu = load_grid(write_grid(tmp_path))
    gpu = load_grid(with_resources(write_grid(tmp_path, name="on-gpu"), "gpu: 1"))
    tpu = load_grid(with_resources(write_grid(tmp_path, name="on-tpu"), "tpu: 4"))
    in_a_bucket = load_grid(write_cifar_grid(tmp_path, "s3://bucket/cifar-10-batches-py"), check_data=False)
    cache = {"TILTSWEEP_COMPILE_CACHE": str(tmp_path / "cache")}
    assert wanted(gpu, None, environ=cache) and not wanted(cpu, None, environ=cache)  # auto: where compilations are long
    assert wanted(cpu, None, environ={**cache, SETTING: "on"}) and not wanted(gpu, None, environ={**cache, SETTING: "off"})
    assert not wanted(tpu, None, environ={**cache, SETTING: "on"})  # a TPU host's chips take one process at a time
    assert not wanted(gpu, "10.0.0.1:6379", environ=cache)  # a cluster's workers do not share this machine's cache
    assert not wanted(gpu, None, environ={"TILTSWEEP_COMPILE_CACHE": "off"})
    assert not wanted(in_a_bucket, None, environ={**cache, SETTING: "on"})  # its copy on this machine is the workers' to make
    results = results_dir_for(gpu, tmp_path / "results")
    assert wanted(gpu, None, results, environ=cache)
    results.save_grid(gpu.text, gpu.source, gpu.description())
    assert not wanted(gpu, None, results, environ=cache)  # resumed: its first block is another


def cached_programs(cache: Path) -> set[str]:
    return {path.name for path in cache.glob("*/*-cache")}


@pytest.mark.slow
@pytest.mark.parametrize("batch_points", ["auto", 3])
def test_the_workers_load_the_programs_the_warm_up_compiled(tmp_path, batch_points):
    """Run alone to its end, the warm-up fills the cache with the first block's programs; the
    sweep's workers then compile nothing of their own: they load those programs."""
    grid = write_grid(tmp_path, epochs=1000)
    grid.write_text(grid.read_text().replace("checkpoint_every: 1000}", f"checkpoint_every: 1000, batch_points: {batch_points}}}"))
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


@pytest.mark.slow
def test_a_model_stepped_from_the_host_has_its_step_warmed_too(tmp_path, cifar_dir):
    """Its step too; and its host loop compiles nothing past that (no eager operation: each
    would compile a program of its own in every worker)."""
    grid = write_cifar_grid(tmp_path, str(cifar_dir))
    cache = tmp_path / "cache"
    done = warm_up_alone(load_grid(grid), cache)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    warmed = cached_programs(cache)
    assert any(name.startswith("jit__host_step-") for name in warmed)
    env = {**os.environ, "TILTSWEEP_COMPILE_CACHE": str(cache), SETTING: "off"}
    run = subprocess.run([sys.executable, "-m", "tiltsweep", "run", str(grid), "--out", str(tmp_path / "out"), "--no-plot"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and "2/2 completed" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
    assert cached_programs(cache) == warmed


@pytest.mark.slow
def test_no_trial_starts_before_the_warm_up_ends(tmp_path):
    """The warm-up, stopped (SIGSTOP) as soon as it is seen, holds the sweep's trials back after
    Ray is up and the sweep described; let go (SIGCONT), it ends and the sweep runs."""
    grid = write_grid(tmp_path, epochs=1000)
    out = tmp_path / "out"
    env = {**os.environ, SETTING: "on", "TILTSWEEP_COMPILE_CACHE": str(tmp_path / "cache")}
    driver = Driver(["run", str(grid), "--out", str(out), "--no-plot"], env=env)
    try:
        found: list[psutil.Process] = []

        def warm_up_seen() -> bool:
            for process in driver.tree.remember():
                try:
                    if CODE in process.cmdline():
                        process.suspend()
                        found.append(process)
                        return True
                except psutil.NoSuchProcess:
                    pass
            return False

        driver.wait_until(warm_up_seen, what="the warm-up process")
        (warm_up,) = found
        driver.wait_until(lambda: (out / "ray-sweep" / "sweep.json").exists(), what="the sweep described (Ray up, the lock taken)")
        time.sleep(8)  # a trial would start and write its pack's records by now (a few seconds here)
        assert warm_up.status() == psutil.STATUS_STOPPED
        assert ResultsDir(out / "ray-sweep").records.ids() == []
        warm_up.resume()
        assert driver.wait() == 0
        assert "6/6 completed" in driver.output()
    finally:
        driver.cleanup()


def test_a_finished_warm_up_leaves_its_programs_and_one_the_sweep_outlives_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setenv(SETTING, "on")
    monkeypatch.setenv("TILTSWEEP_COMPILE_CACHE", str(tmp_path / "cache"))
    spec = load_grid(write_grid(tmp_path))
    with warming_up(spec, None) as warm_up:
        assert warm_up.process.poll() is None  # compiling while Ray would start (its JAX alone takes over a second to load)
        warm_up.finish()  # as the runner does before the first trial: the device is the workers' alone
        assert warm_up.process.returncode == 0 and cached_programs(tmp_path / "cache")
    with warming_up(spec, None) as warm_up:
        pass  # a sweep that ends before its trials (nothing to run, a refusal, a signal)
    assert warm_up.process.returncode == -signal.SIGTERM  # stopped, not left behind
    assert not warm_up.sent.exists()  # nor the spec's file it had no time to read


def test_deciding_on_a_warm_up_loads_no_jax_in_the_driver(tmp_path):
    """The driver trains nothing and keeps JAX out of its memory (the workers and the warm-up load it)."""
    grid = with_resources(write_grid(tmp_path, name="on-gpu"), "gpu: 1")
    code = ("import sys; from pathlib import Path; from tiltsweep.sweep.grid import load_grid; from tiltsweep.sweep.run.warmup import wanted; "
            f"print(wanted(load_grid(Path({str(grid)!r})), None), 'jax' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TILTSWEEP_COMPILE_CACHE": str(tmp_path / "cache"), SETTING: "auto"})
    assert done.stdout.split() == ["True", "False"], done.stderr[-2000:]
