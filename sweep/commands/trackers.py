"""`tiltsweep run GRID --log-to mlflow[:URI]` or `--log-to wandb`: every finished point of the
sweep as one run of the tracker the lab keeps.

A run per point: its name and the tag `tiltsweep.trial_id` are the point's trial id; its
experiment (MLflow) or project and group (W&B) is the sweep's name; its parameters are the
point's config flattened to dotted keys (`loss.amplitude`, `optimizer.learning_rate`, ...) with the
code version; its metrics are the point's curves by training step (every column of
curves.parquet) and its final metrics; it ends FINISHED for a completed or diverged point
(tag `tiltsweep.status`), FAILED for a failed one.

Ray Tune's MLflowLoggerCallback and WandbLoggerCallback log a run per Tune trial from what the
trial reports; here a Tune trial is a pack of points whose curves reach the driver as records,
so the points are logged from the results directory instead, through the same clients. That
also makes logging idempotent: a record the tracker already has (its trial id and finish time,
tag `tiltsweep.finished_at`) is not logged again, so `resume` logs what finished since (a failed
point trained again is a second run), and points finished before a tracker was named are logged
when one is.
A tracker that fails warns once and stops logging; the sweep goes on.
"""

from __future__ import annotations

import json
import math
import os
from typing import Optional

from tiltsweep.sweep.errors import Refused
from tiltsweep.sweep.store import ResultsDir
from tiltsweep.sweep.store.ledger import FINAL_METRICS

TRIAL_TAG, STATUS_TAG, FINISHED_TAG = "tiltsweep.trial_id", "tiltsweep.status", "tiltsweep.finished_at"
LOGGED_STATUSES = ("completed", "diverged", "failed")
KINDS = ("mlflow", "wandb")


class TrackerUnavailable(Refused):
    """--log-to names a tracker that is not installed or cannot be reached."""


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    """{"loss": {"amplitude": 10}} -> {"loss.amplitude": "10"}."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return flat


def parse_log_to(option: str) -> tuple[str, Optional[str]]:
    """'mlflow' -> ('mlflow', None); 'mlflow:sqlite:///m.db' -> ('mlflow', 'sqlite:///m.db')."""
    kind, _, uri = option.partition(":")
    if kind not in KINDS:
        raise Refused(f"--log-to {option}: choose mlflow[:URI] or wandb")
    if kind == "wandb" and uri:
        raise Refused(f"--log-to {option}: W&B logs offline (WANDB_DIR says where); no URI")
    return kind, uri or None


class Tracker:
    """What both trackers share: which points are new, and what a point's run holds."""

    def __init__(self, results: ResultsDir, name: str):
        self.results, self.name = results, name
        self.logged: set[tuple[str, str]] = set()  # (trial id, finished at) of the records logged

    def sync(self, live: bool = True) -> int:
        """Log every finished point the tracker does not have yet; returns how many."""
        summary = self.results.tables.summary()
        if summary.empty:
            return 0
        keys = list(zip(summary["trial_id"], summary["finished_at"].astype(str)))
        new = summary[summary["status"].isin(LOGGED_STATUSES).to_numpy() & [key not in self.logged for key in keys]]
        if new.empty:
            return 0
        curves = self.results.tables.curves(set(new["trial_id"]))
        by_trial = dict(tuple(curves.groupby("trial_id"))) if len(curves) else {}
        for row in new.to_dict("records"):
            history = by_trial.get(row["trial_id"])
            metrics = {}
            if history is not None:
                columns = [c for c in history.columns if c not in ("trial_id", "step") and history[c].dtype.kind in "fiu"]
                metrics = {c: [(int(s), float(v)) for s, v in zip(history["step"], history[c]) if not math.isnan(v)] for c in columns}
            final = {m: float(row[m]) for m in (*FINAL_METRICS, "best_val_accuracy") if m in row and row[m] is not None and not math.isnan(row[m])}
            params = {**flatten(json.loads(row["config"])), "code_version": str(row.get("code_version", ""))}
            key = (row["trial_id"], str(row["finished_at"]))
            self.log_point(key, row["status"], params, metrics, final)
            self.logged.add(key)
        return len(new)

    def log_point(self, key: tuple[str, str], status: str, params: dict, metrics: dict, final: dict) -> None:
        """key: (trial id, finished at); metrics: {name: [(step, value)]}; final: {name: value}."""
        raise NotImplementedError


class MlflowTracker(Tracker):
    """MLflow through its client: any tracking URI (a local `sqlite:///mlflow.db`, a server)."""

    def __init__(self, results: ResultsDir, name: str, uri: Optional[str]):
        super().__init__(results, name)
        try:
            from mlflow.entities import Metric, Param, RunStatus
            from mlflow.exceptions import MlflowException
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise TrackerUnavailable("--log-to mlflow: MLflow is not installed (pip install 'tiltsweep[mlflow]')") from None
        self.Metric, self.Param, self.RunStatus = Metric, Param, RunStatus
        try:
            self.client = MlflowClient(tracking_uri=uri)
            found = self.client.get_experiment_by_name(name)
            self.experiment = found.experiment_id if found else self.client.create_experiment(name)
            self.logged = self.already_logged()
        except MlflowException as error:
            raise TrackerUnavailable(f"--log-to mlflow{':' + uri if uri else ''}: {str(error).split('. ')[0]}") from None

    def already_logged(self) -> set[str]:
        logged, token = set(), None
        while True:
            page = self.client.search_runs([self.experiment], max_results=1000, page_token=token)
            logged.update((run.data.tags.get(TRIAL_TAG), run.data.tags.get(FINISHED_TAG)) for run in page)
            token = page.token
            if not token:
                return logged

    def log_point(self, key, status, params, metrics, final) -> None:
        trial_id, finished_at = key
        run = self.client.create_run(self.experiment, run_name=trial_id, tags={TRIAL_TAG: trial_id, STATUS_TAG: status, FINISHED_TAG: finished_at})
        entries = [self.Metric(key, value, 0, step) for key, points in metrics.items() for step, value in points]
        entries += [self.Metric(f"final_{key}", value, 0, 0) for key, value in final.items()]
        params = [self.Param(key, value[:6000]) for key, value in params.items()]
        for start in range(0, len(params), 100):  # MLflow's batch limits: 100 params, 1,000 metrics
            self.client.log_batch(run.info.run_id, params=params[start:start + 100])
        for start in range(0, len(entries), 1000):
            self.client.log_batch(run.info.run_id, metrics=entries[start:start + 1000])
        self.client.set_terminated(run.info.run_id, "FAILED" if status == "failed" else "FINISHED")


class WandbTracker(Tracker):
    """Weights & Biases in offline mode (`wandb sync` uploads later), its runs in the results
    directory's tracker folder (or WANDB_DIR); the points it has logged are kept in the store
    (`tracker_logged`), since an offline run cannot ask the server."""

    def __init__(self, results: ResultsDir, name: str):
        super().__init__(results, name)
        try:
            import wandb
        except ImportError:
            raise TrackerUnavailable("--log-to wandb: W&B is not installed (pip install 'tiltsweep[wandb]')") from None
        self.wandb = wandb
        self.logged = {tuple(key) for key in results.tracker_logged("wandb")}

    def log_point(self, key, status, params, metrics, final) -> None:
        trial_id, finished_at = key
        run = self.wandb.init(project=self.name, group=self.name, name=trial_id, config=params, mode="offline",
                              dir=os.environ.get("WANDB_DIR") or str(self.results.tracker_folder()),
                              tags=[status], reinit="create_new", settings=self.wandb.Settings(silent=True, console="off"))
        steps = sorted({step for points in metrics.values() for step, _ in points})
        at = {key: dict(points) for key, points in metrics.items()}
        for step in steps:
            run.log({key: values[step] for key, values in at.items() if step in values}, step=step)
        run.summary.update({**{f"final_{k}": v for k, v in final.items()}, TRIAL_TAG: trial_id, STATUS_TAG: status, FINISHED_TAG: finished_at})
        run.finish(exit_code=1 if status == "failed" else 0)
        self.results.save_tracker_logged("wandb", sorted(self.logged | {key}))


def open_tracker(option: str, results: ResultsDir, name: str) -> Tracker:
    kind, uri = parse_log_to(option)
    return MlflowTracker(results, name, uri) if kind == "mlflow" else WandbTracker(results, name)
