"""Sweeps on a real local Ray: results on disk, extension, retries of failing points."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tiltsweep.analysis import plots
from tiltsweep.analysis.load import load_results
from tiltsweep.sweep.commands.cli import main
from sweep_helpers import records, write_grid

pytestmark = pytest.mark.slow

def status_json(results_dir: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["status", str(results_dir), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


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
    assert main(["run", str(grid), "--out", str(out), "--no-plot"]) == 0
    assert "0 to run" in capsys.readouterr().out


def test_extended_grid_runs_only_its_new_points(tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["run", str(write_grid(tmp_path, epochs=1000)), "--out", str(out), "--no-plot"]) == 0
    before = records(out / "ray-sweep")
    assert main(["run", str(write_grid(tmp_path, amplitudes="[1, 10, 30]", epochs=1000)), "--out", str(out), "--no-plot"]) == 0
    assert "6 already done, 3 to run" in capsys.readouterr().out
    after = records(out / "ray-sweep")
    assert len(after) == 9
    for trial_id, record in before.items():
        assert after[trial_id]["finished_at"] == record["finished_at"] and after[trial_id]["host"] == record["host"]
    summary = pd.read_parquet(out / "ray-sweep" / "summary.parquet")
    assert len(summary) == 9 and summary["trial_id"].is_unique and sorted(set(summary["amplitude"])) == [1, 10, 30]


def test_amplitude_one_trains_once_per_seed_and_fills_every_period(tmp_path, capsys):
    grid = write_grid(tmp_path, amplitudes="[1, 10]\n  period: [100, 200]", epochs=1000)
    out = tmp_path / "results"
    assert main(["run", str(grid), "--out", str(out), "--no-plot"]) == 0
    assert "9 points, 0 already done, 9 to run" in capsys.readouterr().out  # 12 cells: A = 1's 3 seeds serve both periods
    directory = out / "ray-sweep"
    assert status_json(directory, capsys)["completed"] == 9
    results = load_results(directory)
    assert len(results.summary) == 12 and len(results.trials) == 9
    table = plots.phase_table(results).set_index(["amplitude", "period"])
    assert (table["n"] == 3).all()
    assert table.loc[(1.0, 100.0), "mean"] == table.loc[(1.0, 200.0), "mean"]
    gain = plots.phase_table(results, gain=True).set_index(["amplitude", "period"])
    assert (gain.loc[1.0, "mean"] == 0).all() and gain.loc[10.0, "n"].tolist() == [3, 3]



def test_injected_failures_are_retried_from_checkpoints(tmp_path, monkeypatch):
    faults = [
        {"where": {"amplitude": 10, "seed": 1}, "epoch": 1500, "action": "raise"},
        {"where": {"amplitude": 1, "seed": 2}, "epoch": 1500, "action": "exit"},  # the worker process dies
    ]
    monkeypatch.setenv("TILTSWEEP_FAULTS", json.dumps(faults))
    out = tmp_path / "results"
    assert main(["run", str(write_grid(tmp_path)), "--out", str(out), "--no-plot"]) == 0
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
    assert main(["run", str(grid), "--out", str(out), "--no-plot"]) == 3
    summary = pd.read_parquet(out / "ray-sweep" / "summary.parquet").set_index(["amplitude", "seed"])
    assert summary.loc[(10.0, 0), "status"] == "failed"
    assert "InjectedFault: injected fault at epoch 500" in summary.loc[(10.0, 0), "error"]
    assert (summary.drop(index=[(10.0, 0)])["status"] == "completed").all()
    state = status_json(out / "ray-sweep", capsys)
    assert (state["completed"], state["failed"]) == (5, 1)
    assert "InjectedFault" in next(iter(state["errors"].values()))
    # Without the fault, the next run trains the failed point again and nothing else.
    monkeypatch.delenv("TILTSWEEP_FAULTS")
    assert main(["run", str(grid), "--out", str(out), "--no-plot"]) == 0
    assert "5 already done, 1 to run" in capsys.readouterr().out
    assert status_json(out / "ray-sweep", capsys)["completed"] == 6


def test_batched_points_train_together_and_a_failed_group_resumes_from_checkpoints(tmp_path, monkeypatch):
    grid = tmp_path / "batched.yaml"
    grid.write_text(write_grid(tmp_path).read_text().replace("name: ray-sweep", "name: batched")
                    .replace("checkpoint_every: 1000}", "checkpoint_every: 1000, batch_points: 3}"))
    monkeypatch.setenv("TILTSWEEP_FAULTS", json.dumps([{"where": {"amplitude": 10, "seed": 1}, "epoch": 1500, "action": "raise"}]))
    out = tmp_path / "results"
    assert main(["run", str(grid), "--out", str(out), "--no-plot"]) == 0
    final = records(out / "batched")
    assert len(final) == 6 and {r["status"] for r in final.values()} == {"completed"}
    assert {r["trained_with"] for r in final.values()} == {3}
    by_amplitude = {}
    for record in final.values():
        by_amplitude.setdefault(record["config"]["loss"]["amplitude"], []).append(record)
    # The group with the faulty member (A = 10) ran twice, every member resuming at epoch 1000;
    # the other group ran once from the start.
    assert [(r["attempts"], r["resumed_from_epoch"]) for r in by_amplitude[10.0]] == [(2, 1000)] * 3
    assert [(r["attempts"], r["resumed_from_epoch"]) for r in by_amplitude[1.0]] == [(1, 0)] * 3
    summary = pd.read_parquet(out / "batched" / "summary.parquet")
    assert len(summary) == 6 and summary["trial_id"].is_unique
    # The same points run one at a time have the same ids: batching is how a point runs, not what it is.
    assert main(["run", str(write_grid(tmp_path, name="batched")), "--out", str(out), "--no-plot"]) == 0
    assert records(out / "batched").keys() == final.keys()


def test_a_deterministic_error_is_recorded_at_once_not_retried(tmp_path, cifar_dir):
    """Data that is gone by the time a worker trains fails the same way on every attempt: the
    point is recorded as failed after one attempt, with the reason."""
    import io
    import shutil

    from tiltsweep.sweep.grid import load_grid
    from tiltsweep.sweep.run.runner import results_dir_for, run_sweep

    grid = tmp_path / "gone.yaml"
    grid.write_text(f"""\
name: gone
data: {{name: cifar10, path: {cifar_dir}, classes: [0, 1], train_size: 16}}
model: {{name: myrtle5, channels: 4}}
optimizer: {{name: sgd, learning_rate: 0.01, batch_size: 8}}
training: {{epochs: 2}}
grid:
  seed: [0, 1]
resources: {{cpu: 1, retries: 3}}
""")
    spec = load_grid(grid)  # validated while the directory is there
    shutil.rmtree(cifar_dir)
    outcome = run_sweep(spec, results_dir_for(spec, tmp_path / "results"), stream=io.StringIO())
    assert outcome.counts == {"completed": 0, "diverged": 0, "failed": 2}
    for record in records(tmp_path / "results" / "gone").values():
        assert record["attempts"] == 1 and record["error"].startswith("DatasetError: ") and "CIFAR-10 directory not found" in record["error"]


def test_trials_at_once_is_bounded_by_the_scarcest_resource(tmp_path):
    from tiltsweep.sweep.run.packs import trials_at_once
    from tiltsweep.sweep.grid import load_grid

    cpu_only = load_grid(write_grid(tmp_path))  # cpu: 1
    assert trials_at_once(cpu_only, {"CPU": 2.0, "GPU": 0.0}) == 2
    grid = tmp_path / "gpu.yaml"
    grid.write_text(write_grid(tmp_path).read_text().replace("resources: {cpu: 1,", "resources: {cpu: 2, gpu: 0.5,"))
    shared_gpu = load_grid(grid)
    assert trials_at_once(shared_gpu, {"CPU": 16.0, "GPU": 1.0}) == 2  # two halves of one GPU
    assert trials_at_once(shared_gpu, {"CPU": 3.0, "GPU": 4.0}) == 1  # CPUs run out first
    assert trials_at_once(shared_gpu, {}) == 1  # a cluster still starting: at least one


def test_a_trial_without_accelerators_stays_on_the_cpu_although_jax_is_imported():
    import jax

    from tiltsweep.sweep.run.worker import configure_accelerator

    before = jax.config.jax_platforms
    environ = {}
    try:
        jax.config.update("jax_platforms", None)  # as in a worker whose environment has no JAX_PLATFORMS
        configure_accelerator(cpu=1, gpu=0, tpu=0, environ=environ)
        assert jax.config.jax_platforms == "cpu"  # the variable alone comes too late for JAX
    finally:
        jax.config.update("jax_platforms", before)
    assert environ == {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}
    environ = {}
    configure_accelerator(cpu=4, gpu=0.5, tpu=0, environ=environ)
    assert environ == {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.475"}


@pytest.mark.parametrize("resources,expected", [
    ("{cpu: 1000}", "resources.cpu: each trial asks for 1000 CPU, but no node of this machine's Ray has that many (the most on one node: "),
    ("{cpu: 1, gpu: 1}", "resources.gpu: each trial asks for 1 GPU, but no node of this machine's Ray has that many (the most on one node: 0)"),
])
def test_resources_no_node_has_are_refused_before_anything_is_queued(tmp_path, capsys, tally, resources, expected):
    grid = write_grid(tmp_path)
    grid.write_text(grid.read_text().replace("resources: {cpu: 1, retries: 2}", f"resources: {resources}"))
    out = tmp_path / "results"
    assert main(["run", str(grid), "--out", str(out), "--no-plot"]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and expected in message and str(grid) in message
    assert not out.exists()  # nothing written
    tally.refusal("resources no node has")


def test_a_trial_that_fails_before_training_records_why(tmp_path, monkeypatch, capsys):
    """Every worker fails before its pack's first point starts (here: the compilation cache's
    folder lies under a file, so the worker cannot make it): each point gets a failed record
    saying so, which status and the summary's error column show."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TILTSWEEP_COMPILE_CACHE", str(blocker / "xla"))
    grid = write_grid(tmp_path, amplitudes="[10]", retries=0)
    out = tmp_path / "results"
    assert main(["run", str(grid), "--out", str(out), "--no-plot"]) == 3
    state = status_json(out / "ray-sweep", capsys)
    assert state["failed"] == 3 and len(state["errors"]) == 3
    for error in state["errors"].values():
        assert error.startswith("before training: ") and "Error" in error, error
    summary = pd.read_parquet(out / "ray-sweep" / "summary.parquet")
    assert (summary["status"] == "failed").all() and summary["error"].str.startswith("before training: ").all()


def test_a_bfloat16_sweep_of_the_quickstarts_smoke_variant_completes_with_finite_metrics(tmp_path):
    quickstart = (Path(__file__).resolve().parent.parent / "grids" / "quickstart.yaml").read_text()
    training = "training: {epochs: 60000, eval_every: 500, checkpoint_every: 20000}"
    assert training in quickstart
    grid = tmp_path / "quickstart.yaml"
    grid.write_text(quickstart.replace(training, training[:-1] + ", dtype: bfloat16}"))
    out = tmp_path / "results"
    assert main(["run", str(grid), "--smoke", "--out", str(out), "--no-plot"]) == 0
    summary = pd.read_parquet(out / "quickstart-smoke" / "summary.parquet")
    assert len(summary) == 3 and set(summary["status"]) == {"completed"}
    assert all(json.loads(config)["training"]["dtype"] == "bfloat16" for config in summary["config"])
    curves = pd.read_parquet(out / "quickstart-smoke" / "curves.parquet")
    metrics = ["train_loss", "train_accuracy", "val_loss", "val_accuracy", "weighted_loss"]
    assert len(curves) == 3 * 13 and curves[metrics].notna().all().all() and np.isfinite(curves[metrics].to_numpy()).all()
