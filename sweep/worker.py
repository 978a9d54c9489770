"""Run one grid point inside a worker process. Ray-free: the executor passes `report`.

    run_trial(payload, report)

payload: {trial_id, config (plain dict), axes, results_dir (absolute), code_version, faults}.
The trial resumes from its newest checkpoint that verifies (unreadable ones are quarantined),
checkpoints into the results directory every `training.checkpoint_every` epochs, and on finishing
writes its record (trials/<id>.msgpack) and then removes its checkpoints. Exceptions propagate:
the executor retries the trial, which then resumes from its checkpoint.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Callable

from sweep.faults import faults_for
from sweep.results import ResultsDir


def configure_accelerator(cpu: float, gpu: float, tpu: float, environ=os.environ) -> None:
    """Set up JAX for this worker's share, before JAX starts its backend:
    - a fractional GPU share caps JAX's GPU memory to that share (XLA_PYTHON_CLIENT_MEM_FRACTION);
    - a trial with no accelerator stays on the CPU even on a GPU node (JAX_PLATFORMS=cpu), and a
      one-CPU trial keeps XLA's CPU kernels on one thread so workers do not fight for cores."""
    if gpu > 0:
        if gpu < 1:
            environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.95 * gpu:.3f}"
    elif tpu == 0:
        environ["JAX_PLATFORMS"] = "cpu"
        if cpu <= 1 and "xla_cpu_multi_thread_eigen" not in environ.get("XLA_FLAGS", ""):
            environ["XLA_FLAGS"] = (environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()


def run_trial(payload: dict, report: Callable[[dict], None]) -> str:
    from trainers import Checkpoint, TrialConfig, compilation_counts, train

    results = ResultsDir(payload["results_dir"])
    trial_id = payload["trial_id"]
    config = TrialConfig.model_validate(payload["config"])
    faults = faults_for(payload)
    attempt = results.begin_attempt(trial_id)
    resumed = results.latest_checkpoint(trial_id, decode=Checkpoint.from_bytes)
    checkpoint = resumed[1] if resumed else None

    def on_eval(row: dict) -> None:
        report({"epoch": row["epoch"], "val_accuracy": row["val_accuracy"], "train_accuracy": row["train_accuracy"]})
        if faults:
            faults.at_epoch(row["epoch"])

    def on_checkpoint(ckpt) -> None:
        results.save_checkpoint(trial_id, ckpt.epoch, ckpt.to_bytes())

    result = train(config, on_eval=on_eval, checkpoint=checkpoint, on_checkpoint=on_checkpoint)
    results.write_record({
        "trial_id": trial_id,
        "status": result.status,
        "config": payload["config"],
        "history": result.history,
        "steps": result.steps,
        "epochs": result.epochs,
        "wall_seconds": result.wall_seconds,
        "resumed_from_epoch": checkpoint.epoch if checkpoint else 0,
        "attempts": attempt,
        "code_version": payload["code_version"],
        "error": result.message,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": f"{socket.gethostname()}:{os.getpid()}",
        # XLA compilations of the training loop in this worker process so far: 1 while every
        # trial it ran had the same shapes (workers are reused across trials).
        "worker_compilations": compilation_counts()["jit(_train_epochs)"],
    })
    results.clear_checkpoints(trial_id)
    report({"epoch": result.epochs, "done": 1, "status": result.status})
    return result.status


def failure_record(payload: dict, error: str, code_version: str) -> dict:
    """The record the driver writes for a trial whose every attempt crashed."""
    return {
        "trial_id": payload["trial_id"],
        "status": "failed",
        "config": payload["config"],
        "history": [],
        "code_version": code_version,
        "error": error,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
