"""Sweeps on a real local Ray: results on disk, resume after SIGKILL, extension, retries."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from sweep.cli import main
from sweep.results import ResultsDir

pytestmark = pytest.mark.slow

GRID = """\
name: {name}
data: {{name: spiral, points_per_class: 30, classes: 3}}
model: {{name: mlp, width: 10}}
optimizer: {{name: sgd, learning_rate: 1.0, batch_size: full}}
training: {{epochs: {epochs}, eval_every: 500, checkpoint_every: 1000}}
loss: {{amplitude: 1, period: 200}}
grid:
  amplitude: {amplitudes}
  seed: [0, 1, 2]
resources: {{cpu: 1, retries: 2}}
"""


def write_grid(directory: Path, name="ray-sweep", amplitudes="[1, 10]", epochs=2000) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(GRID.format(name=name, amplitudes=amplitudes, epochs=epochs))
    return path


def status_json(results_dir: Path, capsys=None) -> dict:
    if capsys is None:
        out = subprocess.run([sys.executable, "-m", "sweep.cli", "status", str(results_dir), "--json"],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)
    capsys.readouterr()
    assert main(["status", str(results_dir), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def records(results_dir: Path) -> dict:
    results = ResultsDir(results_dir)
    return {trial_id: results.read_record(trial_id) for trial_id in results.record_ids()}


def test_small_grid_end_to_end(tmp_path, capsys):
    grid = write_grid(tmp_path)
    out = tmp_path / "results"
    assert main(["run", str(grid), "--out", str(out)]) == 0
    directory = out / "ray-sweep"
    summary = pd.read_parquet(directory / "summary.parquet")
    assert len(summary) == 6 and set(summary["status"]) == {"completed"}
    assert sorted(zip(summary["amplitude"], summary["seed"])) == [(a, s) for a in (1.0, 10.0) for s in (0, 1, 2)]
    assert summary["trial_id"].is_unique
    assert (summary["steps"] == 2000).all() and summary["code_version"].str.startswith("tiltsweep ").all()
    for column in ("train_accuracy", "val_accuracy", "train_loss", "val_loss", "best_val_accuracy", "wall_seconds"):
        assert summary[column].notna().all(), column
    curves = pd.read_parquet(directory / "curves.parquet")
    assert sorted(curves.groupby("trial_id").size().unique()) == [5]  # epochs 0, 500, ..., 2000
    assert set(curves["trial_id"]) == set(summary["trial_id"])
    final = curves.sort_values("step").groupby("trial_id").last()
    merged = summary.merge(final, left_on="trial_id", right_index=True, suffixes=("", "_curve"))
    assert (merged["val_accuracy"] == merged["val_accuracy_curve"]).all()
    assert (directory / "grid.yaml").read_text() == grid.read_text()
    assert status_json(directory, capsys) | {"trials": None, "errors": None, "unreadable": None} == {
        "completed": 6, "partial": 0, "pending": 0, "failed": 0, "diverged": 0, "total": 6, "name": "ray-sweep",
        "outside_grid": 0, "trials": None, "errors": None, "unreadable": None,
    }
    assert not list((directory / "checkpoints").glob("*/*.ckpt"))  # finished trials leave no state behind
    # Workers are reused: fewer worker processes than trials, each compiled the training loop once.
    by_worker = {}
    for record in records(directory).values():
        by_worker.setdefault(record["host"], []).append(record["worker_compilations"])
    assert len(by_worker) < 6 and all(max(counts) == 1 for counts in by_worker.values()), by_worker
    # Running the same grid again runs nothing.
    assert main(["run", str(grid), "--out", str(out)]) == 0
    assert "0 to run" in capsys.readouterr().out


def test_extended_grid_runs_only_its_new_points(tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["run", str(write_grid(tmp_path, epochs=1000)), "--out", str(out)]) == 0
    before = records(out / "ray-sweep")
    assert main(["run", str(write_grid(tmp_path, amplitudes="[1, 10, 30]", epochs=1000)), "--out", str(out)]) == 0
    assert "6 already done, 3 to run" in capsys.readouterr().out
    after = records(out / "ray-sweep")
    assert len(after) == 9
    for trial_id, record in before.items():
        assert after[trial_id]["finished_at"] == record["finished_at"] and after[trial_id]["host"] == record["host"]
    summary = pd.read_parquet(out / "ray-sweep" / "summary.parquet")
    assert len(summary) == 9 and summary["trial_id"].is_unique and sorted(set(summary["amplitude"])) == [1, 10, 30]


def test_injected_failures_are_retried_from_checkpoints(tmp_path, monkeypatch):
    faults = [
        {"where": {"amplitude": 10, "seed": 1}, "epoch": 1500, "action": "raise"},
        {"where": {"amplitude": 1, "seed": 2}, "epoch": 1500, "action": "exit"},  # the worker process dies
    ]
    monkeypatch.setenv("TILTSWEEP_FAULTS", json.dumps(faults))
    out = tmp_path / "results"
    assert main(["run", str(write_grid(tmp_path)), "--out", str(out)]) == 0
    summary = pd.read_parquet(out / "ray-sweep" / "summary.parquet").set_index(["amplitude", "seed"])
    assert set(summary["status"]) == {"completed"} and len(summary) == 6
    assert summary.loc[(10.0, 1), "resumed_from_epoch"] == 1000
    assert summary.loc[(1.0, 2), "resumed_from_epoch"] == 1000
    others = summary.drop(index=[(10.0, 1), (1.0, 2)])
    assert (others["resumed_from_epoch"] == 0).all()
    assert len(list((out / "ray-sweep" / ".faults").iterdir())) == 2  # each fault fired once


def test_a_point_that_keeps_failing_is_recorded_and_the_others_finish(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TILTSWEEP_FAULTS", json.dumps([{"where": {"amplitude": 10, "seed": 0}, "epoch": 500, "action": "raise", "times": 5}]))
    out = tmp_path / "results"
    grid = write_grid(tmp_path, epochs=1000)
    assert main(["run", str(grid), "--out", str(out)]) == 3
    summary = pd.read_parquet(out / "ray-sweep" / "summary.parquet").set_index(["amplitude", "seed"])
    assert summary.loc[(10.0, 0), "status"] == "failed"
    assert "InjectedFault: injected fault at epoch 500" in summary.loc[(10.0, 0), "error"]
    assert (summary.drop(index=[(10.0, 0)])["status"] == "completed").all()
    state = status_json(out / "ray-sweep", capsys)
    assert (state["completed"], state["failed"]) == (5, 1)
    assert "InjectedFault" in next(iter(state["errors"].values()))
    # Without the fault, the next run trains the failed point again and nothing else.
    monkeypatch.delenv("TILTSWEEP_FAULTS")
    assert main(["run", str(grid), "--out", str(out)]) == 0
    assert "5 already done, 1 to run" in capsys.readouterr().out
    assert status_json(out / "ray-sweep", capsys)["completed"] == 6


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def kill_all(processes) -> None:
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=10)


def test_driver_killed_mid_sweep_then_resumed(tmp_path):
    """SIGKILL the driver while points are running; resume finishes every point exactly once,
    without re-running finished ones, and continues interrupted ones from their checkpoints."""
    grid = write_grid(tmp_path, name="killed", epochs=30000)
    out = tmp_path / "results"
    directory = out / "killed"
    driver = subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", str(grid), "--out", str(out)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    started = []
    try:
        deadline = time.monotonic() + 240
        seen = []
        while time.monotonic() < deadline:
            started = list({p.pid: p for p in started + descendants(driver.pid)}.values())
            if directory.exists() and (directory / "grid.yaml").exists():
                state = status_json(directory)  # during the run
                assert sum(state[c] for c in ("completed", "partial", "pending", "failed", "diverged")) == 6
                seen.append(state)
                if state["completed"] >= 1 and state["partial"] >= 1:
                    break
            time.sleep(0.3)
        else:
            pytest.fail(f"the sweep never reached a completed and a partial point: {seen[-1:]}")
        started = list({p.pid: p for p in started + descendants(driver.pid)}.values())
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
        kill_all(started)  # Ray's processes of the killed driver, by their ids
    assert [s["completed"] for s in seen] == sorted(s["completed"] for s in seen)

    # What the killed sweep left on disk (nothing moves any more).
    finished_at_kill = records(directory)
    results = ResultsDir(directory)
    partial_at_kill = {t: results.latest_checkpoint(t)[0] for t in results.checkpointed_ids() if t not in finished_at_kill}
    assert finished_at_kill and partial_at_kill

    after_kill = status_json(directory)
    assert after_kill["completed"] >= len(finished_at_kill) and after_kill["pending"] + after_kill["partial"] >= 1

    assert main(["resume", str(directory)]) == 0
    final = records(directory)
    assert len(final) == 6 and {r["status"] for r in final.values()} == {"completed"}
    for trial_id, record in finished_at_kill.items():
        assert final[trial_id]["finished_at"] == record["finished_at"]  # not run again
    for trial_id, epoch in partial_at_kill.items():
        assert final[trial_id]["resumed_from_epoch"] == epoch > 0  # continued from its checkpoint, not restarted
    summary = pd.read_parquet(directory / "summary.parquet")
    assert len(summary) == 6 and summary["trial_id"].is_unique
    curves = pd.read_parquet(directory / "curves.parquet")
    assert (curves.groupby("trial_id").size() == 61).all()  # every evaluation exactly once
    assert status_json(directory)["completed"] == 6
