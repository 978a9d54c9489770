"""Run grid points inside a worker process. Ray-free: the executor passes `report`.

    run_chain(groups, report)    # a Tune trial: group payloads, one after another (sweep.chains)
    run_group(payload, report)   # one group of points, trained together

payload: {group_id, members: [{trial_id, config (plain dict), axes}], results_dir (absolute),
code_version, resources}. Each member resumes from its newest checkpoint that verifies
(unreadable ones are quarantined), checkpoints into the results directory every
`training.checkpoint_every` epochs, and on finishing gets its record (trials/<id>.msgpack), after
which its checkpoints go. Exceptions propagate (run_chain's after its other groups trained): the
executor retries the chain, whose unfinished members then resume from their checkpoints.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Callable

import jax

from tiltsweep.sweep.faults import faults_for
from tiltsweep.sweep.grid import GridPoint, GridSpec
from tiltsweep.sweep.groups import group_id
from tiltsweep.sweep.ledger import is_final
from tiltsweep.sweep.results import CorruptFile, ResultsDir, checkpoint_name


def payload_for(members: list[GridPoint], spec: GridSpec, results: ResultsDir, code_version: str) -> dict:
    """What a worker gets to train one group of points (plain data, shipped by Ray)."""
    return {
        "group_id": group_id(members),
        "members": [{"trial_id": p.trial_id, "config": p.config.model_dump(mode="json"), "axes": p.axes} for p in members],
        "results_dir": str(results.root),
        "code_version": code_version,
        "resources": {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu, "tpu": spec.resources.tpu},
    }


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
        jax.config.update("jax_platforms", "cpu")  # JAX read the variable when it was imported
        if cpu <= 1 and "xla_cpu_multi_thread_eigen" not in environ.get("XLA_FLAGS", ""):
            environ["XLA_FLAGS"] = (environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()


def permanent_errors() -> tuple:
    """Errors that depend only on a point's inputs (its config, its data)."""
    from pydantic import ValidationError

    from tiltsweep.trainers.data import DatasetError

    return (ValidationError, DatasetError)


PERMANENT_ERRORS = permanent_errors()


def run_chain(groups: list[dict], report: Callable[[dict], None]) -> None:
    """Train a chain's groups one after another, reporting at every boundary between them
    {"running": [trial ids], "finished": [trial ids]}:
    - groups whose points all have a completed or diverged record are skipped (a retried chain);
    - groups none of whose points was ever started go first, so a point that kills its worker
      is retried after the others trained and cannot use up their retries;
    - an exception in one group is raised after the others have trained (Tune then retries the
      chain, which retries that group)."""
    results = ResultsDir(groups[0]["results_dir"])
    ids = lambda group: [member["trial_id"] for member in group["members"]]
    todo = [group for group in groups if not all(has_final_record(results, trial_id) for trial_id in ids(group))]
    todo.sort(key=lambda group: any(results.attempt(trial_id) for trial_id in ids(group)))  # stable
    finished, errors = [], []
    for group in todo:
        report({"running": ids(group), "finished": finished})
        try:
            run_group(group, report)
            finished = ids(group)
        except Exception as error:  # noqa: BLE001 - re-raised below, after the other groups
            errors.append(error)
            finished = []
    report({"running": [], "finished": finished})
    if errors:
        raise errors[0]


def has_final_record(results: ResultsDir, trial_id: str) -> bool:
    try:
        return is_final(results.read_record(trial_id))
    except (FileNotFoundError, CorruptFile):  # the driver quarantines a corrupt one
        return False


def run_group(payload: dict, report: Callable[[dict], None]) -> list[str]:
    """Train every member of a group; members that resume from the same epoch train together.
    Returns the members' statuses."""
    from tiltsweep.trainers import Checkpoint, TrialConfig, train_group, training_loop_compilations

    results = ResultsDir(payload["results_dir"])
    members = payload["members"]
    faults = [faults_for(payload["results_dir"], member["trial_id"], member["axes"]) for member in members]
    attempts = {m["trial_id"]: results.begin_attempt(m["trial_id"]) for m in members}
    by_epoch: dict[int, list[tuple[int, object]]] = {}
    for index, m in enumerate(members):
        resumed = results.latest_checkpoint(m["trial_id"], decode=Checkpoint.from_bytes)
        by_epoch.setdefault(resumed[0] if resumed else 0, []).append((index, resumed[1] if resumed else None))

    statuses = {}
    last_report = [time.monotonic()]
    for epoch, subgroup in sorted(by_epoch.items()):
        indices = [index for index, _ in subgroup]
        try:
            configs = [TrialConfig.model_validate(members[index]["config"]) for index in indices]
            trained = train_group(configs, on_eval=progress_and_faults(indices, faults, report, last_report),
                                  checkpoints=[ckpt for _, ckpt in subgroup],
                                  on_checkpoint=checkpoint_keeper(results, [members[i]["trial_id"] for i in indices], configs))
        except PERMANENT_ERRORS as error:
            # The same inputs fail the same way on every attempt: record them, do not retry.
            message = f"{type(error).__name__}: {' '.join(str(error).split())}"[:500]
            for index in indices:
                results.write_record({**failure_record(members[index], message, payload["code_version"]), "attempts": attempts[members[index]["trial_id"]]})
                statuses[members[index]["trial_id"]] = "failed"
            continue
        for index, config, result in zip(indices, configs, trained):
            trial_id = members[index]["trial_id"]
            if config.training.keep_final_state and result.state is not None:
                results.save_state(trial_id, "final", final_state_bytes(result))
            results.write_record({
                "trial_id": trial_id,
                "status": result.status,
                "config": members[index]["config"],
                "history": result.history,
                "steps": result.steps,
                "epochs": result.epochs,
                "wall_seconds": result.wall_seconds,
                "resumed_from_epoch": epoch,
                "attempts": attempts[trial_id],
                "group_size": len(indices),
                "code_version": payload["code_version"],
                "error": result.message,
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "host": f"{socket.gethostname()}:{os.getpid()}",
                # XLA compilations of the training loop in this worker process so far: 1 while every
                # group it ran had the same shapes (workers are reused across trials).
                "worker_compilations": training_loop_compilations(),
            })
            results.clear_checkpoints(trial_id)
            statuses[trial_id] = result.status
    return [statuses[m["trial_id"]] for m in members]


def progress_and_faults(indices: list[int], faults: list, report: Callable[[dict], None], last_report: list[float]):
    """on_eval for a subgroup: a report to Tune every 30 s at most (results live in the records;
    Tune keeps and writes out every report it gets) and the injected faults of its members."""

    def on_eval(i: int, row: dict) -> None:
        if time.monotonic() - last_report[0] >= 30:
            report({"epoch": row["epoch"], "val_accuracy": row["val_accuracy"]})
            last_report[0] = time.monotonic()
        if faults[indices[i]]:
            faults[indices[i]].at_epoch(row["epoch"])

    return on_eval


def checkpoint_keeper(results: ResultsDir, trial_ids: list[str], configs: list):
    """on_checkpoint for a subgroup: into checkpoints/, and into states/ with keep_checkpoints."""

    def on_checkpoint(i: int, ckpt) -> None:
        data = ckpt.to_bytes()
        results.save_checkpoint(trial_ids[i], ckpt.epoch, data)
        if configs[i].training.keep_checkpoints:
            results.save_state(trial_ids[i], checkpoint_name(ckpt.epoch), data)

    return on_checkpoint


def final_state_bytes(result) -> bytes:
    """A finished point's final train state, in the checkpoint format."""
    import flax.serialization

    from tiltsweep.trainers import Checkpoint

    return Checkpoint(result.epochs, flax.serialization.to_state_dict(result.state), [], result.wall_seconds).to_bytes()


def failure_record(member: dict, error: str, code_version: str) -> dict:
    """The record the driver writes for a point whose every attempt crashed."""
    return {
        "trial_id": member["trial_id"],
        "status": "failed",
        "config": member["config"],
        "history": [],
        "code_version": code_version,
        "error": error,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
