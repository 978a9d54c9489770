"""`--log-to`: a real sweep logged to MLflow's local file store (and to W&B offline where W&B is
installed): one run per point, its config as parameters, its curves as metrics by step, failed
points FAILED, and a resume that logs only what is new."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sweep_helpers import write_grid
from tiltsweep.sweep.commands.cli import main
from tiltsweep.sweep.store import ResultsDir
from tiltsweep.sweep.commands.trackers import STATUS_TAG, TRIAL_TAG, open_tracker

pytestmark = pytest.mark.slow
FAILING = {"where": {"amplitude": 10, "seed": 0}, "epoch": 500, "action": "raise", "times": 5}


def test_every_point_is_one_mlflow_run_with_its_config_and_curves(tmp_path, monkeypatch, capsys):
    mlflow = pytest.importorskip("mlflow", reason="MLflow is not installed (pip install -e '.[dev]')")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store behind this switch
    monkeypatch.setenv("TILTSWEEP_FAULTS", json.dumps([FAILING]))
    uri = (tmp_path / "mlruns").as_uri()
    grid, out = write_grid(tmp_path, name="tracked", epochs=1000, amplitudes="[10]"), tmp_path / "results"
    assert main(["run", str(grid), "--out", str(out), "--no-plot", "--log-to", f"mlflow:{uri}"]) == 3

    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tracked")
    runs = {run.data.tags[TRIAL_TAG]: run for run in client.search_runs([experiment.experiment_id])}
    summary = pd.read_parquet(out / "tracked" / "summary.parquet").set_index("trial_id")
    curves = pd.read_parquet(out / "tracked" / "curves.parquet")
    assert set(runs) == set(summary.index) and len(runs) == 3
    for trial_id, run in runs.items():
        row, config = summary.loc[trial_id], json.loads(summary.loc[trial_id, "config"])
        assert run.info.run_name == trial_id and run.data.tags[STATUS_TAG] == row["status"]
        assert run.info.status == ("FAILED" if row["status"] == "failed" else "FINISHED")
        assert float(run.data.params["loss.amplitude"]) == config["loss"]["amplitude"] == row["amplitude"]
        assert run.data.params["seed"] == str(config["seed"]) and run.data.params["optimizer.learning_rate"] == "1.0"
        curve = curves[curves["trial_id"] == trial_id].sort_values("step")
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_accuracy"))
        assert history == list(zip(curve["step"], curve["val_accuracy"].astype(float)))
        if row["status"] == "completed":
            assert len(history) >= 2 and run.data.metrics["final_val_accuracy"] == pytest.approx(row["val_accuracy"])

    # The failed point trains again on resume: one more run for it, none again for the others.
    monkeypatch.delenv("TILTSWEEP_FAULTS")
    assert main(["resume", str(out / "tracked"), "--no-plot", "--log-to", f"mlflow:{uri}"]) == 0
    again = client.search_runs([experiment.experiment_id])
    failed = summary.index[summary["status"] == "failed"]
    assert len(again) == 4 and sorted(r.data.tags[TRIAL_TAG] for r in again).count(failed[0]) == 2


def test_an_unknown_tracker_is_refused_before_anything_runs(tmp_path, capsys):
    grid, out = write_grid(tmp_path, name="untracked"), tmp_path / "results"
    assert main(["run", str(grid), "--out", str(out), "--log-to", "tensorboard"]) == 2
    assert capsys.readouterr().err == "tiltsweep: --log-to tensorboard: choose mlflow[:URI] or wandb\n"
    assert not out.exists()


def test_every_point_is_one_offline_wandb_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="W&B is not installed (pip install 'tiltsweep[wandb]')")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    grid, out = write_grid(tmp_path, name="wandb-tracked", epochs=1000, amplitudes="[10]"), tmp_path / "results"
    assert main(["run", str(grid), "--out", str(out), "--no-plot", "--log-to", "wandb"]) == 0
    runs = sorted((tmp_path / "wandb" / "wandb").glob("offline-run-*"))
    summary = pd.read_parquet(out / "wandb-tracked" / "summary.parquet")
    assert len(runs) == len(summary) == 3 and all(list(run.glob("*.wandb")) for run in runs)
    logged = json.loads((out / "wandb-tracked" / "trackers" / "wandb.json").read_text())
    assert sorted(trial_id for trial_id, _ in logged) == sorted(summary["trial_id"])
    assert open_tracker("wandb", ResultsDir(out / "wandb-tracked"), "wandb-tracked").sync() == 0  # nothing new to log
    assert len(sorted((tmp_path / "wandb" / "wandb").glob("offline-run-*"))) == 3
