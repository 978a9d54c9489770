"""Train one pack of grid points (run.packs) inside a worker process. Ray-free: the executor
passes `report`.

    run_pack(payload, report)

payload: {pack_id, base (the grid's config sections), members: [{trial_id, settings, axes}],
results_dir (absolute), code_version, resources, on_accelerator}: a point's config is its
settings set in the base, validated here, where it trains. The pack's records (store.records):
before a block trains, its points' starts are counted there; when it ends, its points' records
are added, in one rewrite. Each point resumes from its newest checkpoint that verifies
(unreadable ones are quarantined), checkpoints every `training.checkpoint_every` epochs, and
loses its checkpoints once its record is final (completed or diverged). How a block that raises
is recorded and retried is run.retries' story.
"""

from __future__ import annotations

import math
import os
import socket
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

import jax

from tiltsweep.sweep.errors import describe_trouble, storage_trouble
from tiltsweep.sweep.grid import with_settings
from tiltsweep.sweep.run import retries
from tiltsweep.sweep.run.faults import faults_for
from tiltsweep.sweep.run.packs import block_width
from tiltsweep.sweep.store import CorruptFile, PackRecords, ResultsDir, TrialRecord
from tiltsweep.sweep.store.files import is_object_uri, local_copy


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


WORKER = f"{socket.gethostname()}:{os.getpid()}"


class PackRun:
    """One attempt at a pack: its record file, kept in memory and rewritten as blocks start and end."""

    def __init__(self, payload: dict):
        self.payload = payload
        self.results = ResultsDir(payload["results_dir"])
        self.members = {member["trial_id"]: member for member in payload["members"]}
        self.configs: dict[str, dict] = {}  # trial id -> its config as its record keeps it (plain data)
        self.local_data: dict[str, object] = {}  # a data config as the grid gives it -> the same on this machine
        try:
            self.book = self.results.records.read(payload["pack_id"])
        except CorruptFile as error:  # moved aside; the points without a record train again
            self.results.quarantine(error.name, error.reason)
            self.book = PackRecords(payload["pack_id"])
        self.results.states.repair(payload["pack_id"])
        self.checkpointed = set(self.results.checkpoints.trials())  # one listing a pack, not two a point

    def newest_epoch(self, trial_id: str):
        """The epoch of the point's newest checkpoint, None without one (not verified)."""
        return self.results.checkpoints.newest_epoch(trial_id) if trial_id in self.checkpointed else None

    def latest_checkpoint(self, trial_id: str):
        """(epoch, Checkpoint) of the point's newest checkpoint that verifies, or None."""
        from tiltsweep.trainers import Checkpoint

        return self.results.checkpoints.latest(trial_id, decode=Checkpoint.from_bytes) if trial_id in self.checkpointed else None

    def todo(self) -> list[str]:
        return retries.training_order(self.members, self.book)

    def config_of(self, trial_id: str):
        """The point's validated TrialConfig, its data on this machine (with_local_data); raises
        what validation raises (the point's record then keeps its config as the grid gave it)."""
        from tiltsweep.trainers import TrialConfig

        raw = self.configs[trial_id] = with_settings(self.payload["base"], self.members[trial_id]["settings"])
        config = TrialConfig.model_validate(raw)
        self.configs[trial_id] = config.model_dump(mode="json")  # what its record keeps: data.path as the grid gave it
        key = config.data.model_dump_json()
        if key not in self.local_data:  # the store listed and the copy checked once a pack, not once a point
            self.local_data[key] = with_local_data(config).data
        return config.model_copy(update={"data": self.local_data[key]})

    def start(self, trial_ids: list[str]) -> None:
        retries.count_starts(self.book, trial_ids, WORKER)
        self.results.records.write(self.book)

    def finish(self, outcomes: dict[str, dict]) -> None:
        """Record how points ended, {trial id: the record's fields, status included}, in one
        rewrite of the pack's file (a rewrite per point would make a block's end quadratic in its
        width: 10 s for a block of 512), then drop the checkpoints of those whose record is final."""
        for trial_id, fields in outcomes.items():
            self.book.records[trial_id] = TrialRecord.written_now(
                trial_id, fields.pop("status"), self.configs[trial_id], self.book.attempts.get(trial_id, 0),
                self.payload["code_version"], host=WORKER, **fields)
        self.results.records.write(self.book)
        self.results.checkpoints.clear_each([t for t in outcomes if self.book.records[t].final and t in self.checkpointed])

    def fail(self, trial_ids: list[str], error: BaseException) -> None:
        """Record the points failed with `error`, in one rewrite of the pack's file."""
        for trial_id in trial_ids:
            self.book.records[trial_id] = retries.failed_record(trial_id, self.configs[trial_id], self.book, retries.one_line(error),
                                                                self.payload["code_version"], host=WORKER)
        self.results.records.write(self.book)


def with_local_data(config):
    """`config` with its data on this machine: a CIFAR-10 directory on object storage (`data.path:
    s3://...` or `gs://...`) replaced by its local copy, a version of it made once per machine and
    verified before each use (store.files.local_copy). DatasetError (not retried) where the store
    lacks a file; an OSError (a file gone as it was copied, a store out of reach) is raised as it
    is, and the pack retried."""
    from tiltsweep.trainers.data import CIFAR10_TEST_BATCH, CIFAR10_TRAIN_BATCHES, DatasetError

    path = getattr(config.data, "path", None)
    if not path or not is_object_uri(path):
        return config
    try:
        local = local_copy(path, [*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH])
    except FileNotFoundError as error:
        raise DatasetError(f"{error}: not a cifar-10-batches-py folder", "data.path") from None
    return config.model_copy(update={"data": config.data.model_copy(update={"path": str(local)})})


REPORT_EVERY = 1.0  # seconds


def run_pack(payload: dict, report: Callable[[dict], None], report_every: float = REPORT_EVERY) -> None:
    """Train a pack's points block by block, reporting {"pack": id, "running": [trial ids],
    "finished": [trial ids]} between blocks, at most every `report_every` seconds, and once at
    the end: each report waits for Tune's driver to take it (~10 ms), so one per point would cost
    more than training a small point. An exception in one block is raised after the others have
    trained."""
    run = PackRun(payload)
    configs, finished, errors = {}, [], []
    for trial_id in run.todo():
        try:
            configs[trial_id] = run.config_of(trial_id)
        except retries.PERMANENT_ERRORS as error:
            run.start([trial_id])
            run.fail([trial_id], error)
            finished.append(trial_id)
    last_report = -math.inf
    for block, width in blocks(run, configs):
        if time.monotonic() - last_report >= report_every:
            report({"pack": payload["pack_id"], "running": block, "finished": finished})
            finished, last_report = [], time.monotonic()
        try:
            run.start(block)
            finished += train_block(run, block, [configs[t] for t in block], width, report)
        except Exception as error:  # noqa: BLE001 - re-raised below, after the other blocks
            if storage_trouble(error):  # nothing more can be written here: the driver stops the sweep
                report({"pack": payload["pack_id"], "running": [], "finished": finished,
                        "storage_trouble": describe_trouble(error, run.results)})
                raise
            # until a retry of the pack trains them
            run.fail([t for t in block if t not in run.book.records or not run.book.records[t].final], error)
            errors.append(error)
    report({"pack": payload["pack_id"], "running": [], "finished": finished})
    if errors:
        raise errors[0]


def blocks(run: PackRun, configs: dict) -> list[tuple[list[str], int]]:
    """(block, width): consecutive points of one batch signature and one newest checkpoint
    epoch, at most `width_of` their first point at a time, and that width."""
    from tiltsweep.trainers.config import batch_signature

    def key(trial_id: str) -> tuple:
        return batch_signature(configs[trial_id]), run.newest_epoch(trial_id)

    out, keys, widths = [], [], []
    for trial_id in configs:
        this = key(trial_id)
        if not out or keys[-1] != this or len(out[-1]) >= widths[-1]:
            out.append([])
            keys.append(this)
            widths.append(width_of(configs[trial_id], run.payload["on_accelerator"]))
        out[-1].append(trial_id)
    return list(zip(out, widths))


def width_of(config, on_accelerator: bool) -> int:
    """training.batch_points, with `auto` resolved on this worker's device (run.packs.block_width)."""
    asked = config.training.batch_points
    if asked != "auto" or not on_accelerator:
        return block_width(asked, 0, 0)
    from tiltsweep.trainers.training import point_bytes

    # what this process may take of the device: a fractional GPU share is in it already (configure_accelerator)
    device_bytes = (jax.local_devices()[0].memory_stats() or {}).get("bytes_limit", 0)
    return block_width(asked, point_bytes(config), device_bytes)


def train_block(run: PackRun, block: list[str], configs: list, width: int, report: Callable[[dict], None]) -> list[str]:
    """Train the block's points together (those resuming from one epoch at a time), a partial
    block padded, on an accelerator only, to the next power of two at most the block `width`
    (trainers.train_group's; trainers.training.padded_size); returns them."""
    from tiltsweep.trainers import train_group, training_loop_compilations

    faults = [faults_for(run.results.faults_folder(), t, run.members[t]["axes"]) for t in block]
    by_epoch: dict[int, list[tuple[int, object]]] = {}
    for index, trial_id in enumerate(block):
        resumed = run.latest_checkpoint(trial_id)
        by_epoch.setdefault(resumed[0] if resumed else 0, []).append((index, resumed[1] if resumed else None))
    for epoch, part in sorted(by_epoch.items()):
        indices = [index for index, _ in part]
        ids, cfgs = [block[i] for i in indices], [configs[i] for i in indices]
        keeper = CheckpointKeeper(run, ids, cfgs)
        try:
            trained = train_group(cfgs, on_eval=progress_and_faults([faults[i] for i in indices], run.payload["pack_id"], report),
                                  checkpoints=[ckpt for _, ckpt in part], on_checkpoint=keeper, width=width if width > 1 else None)
            keeper.wait()
        except retries.PERMANENT_ERRORS as error:  # the same inputs fail the same way every time: recorded, not retried
            run.fail(ids, error)
            continue
        finally:
            keeper.close()
        run.results.states.save(run.payload["pack_id"], ((trial_id, final_state_bytes(result)) for trial_id, config, result in zip(ids, cfgs, trained)
                                                         if config.training.keep_final_state and result.state is not None))
        compilations = training_loop_compilations()
        run.finish({trial_id: dict(status=result.status, history=result.history, steps=result.steps, epochs=result.epochs,
                                   wall_seconds=result.wall_seconds, resumed_from_epoch=epoch, trained_with=len(ids),
                                   error=result.message, worker_compilations=compilations)
                    for trial_id, result in zip(ids, trained)})
    return block


def progress_and_faults(faults: list, pack_id: str, report: Callable[[dict], None]):
    """on_eval for a block: the injected faults of its points, and a report to Tune every 30 s at
    most (results live in the records; Tune keeps and writes out every report it gets)."""
    last = [time.monotonic()]

    def on_eval(i: int, row: dict) -> None:
        if time.monotonic() - last[0] >= 30:
            report({"pack": pack_id, "epoch": row["epoch"], "val_accuracy": row["val_accuracy"]})
            last[0] = time.monotonic()
        if faults[i]:
            faults[i].at_epoch(row["epoch"])

    return on_eval


class CheckpointKeeper:
    """on_checkpoint for a block: each point's checkpoint into checkpoints/, and with
    keep_checkpoints its state into states/ first, at once (a checkpoint is never there without
    its kept state). On a disk a checkpoint is saved at once too (about a millisecond). On object
    storage a save is three round trips (an upload, a listing, a deletion): one point after
    another, with the device idle, a block of 256 points checkpointing 3 times spent 168 s on them
    against a store 20 ms away (benchmarks/README.md, section 16). There the saves go to
    `files.parallel` threads while the block trains on; a round's saves end before the next
    round's first, and `wait` (before the block's points are recorded, which drops their
    checkpoints) lets the last ones end, raising the first error. A worker killed meanwhile loses
    at most that round: its points resume from their previous checkpoint. `close` lets every save
    end and raises nothing."""

    def __init__(self, run: PackRun, trial_ids: list[str], configs: list):
        self.run, self.trial_ids, self.configs = run, trial_ids, configs
        parallel = run.results.files.parallel
        self.pool = ThreadPoolExecutor(parallel, thread_name_prefix="checkpoint-saves") if parallel > 1 else None
        self.saving: list[Future] = []
        self.epoch = None

    def __call__(self, i: int, ckpt) -> None:
        if ckpt.epoch != self.epoch:
            self.wait()  # the previous round's
            self.epoch = ckpt.epoch
        trial_id, data = self.trial_ids[i], ckpt.to_bytes()
        if self.configs[i].training.keep_checkpoints:
            self.run.results.states.save(self.run.payload["pack_id"], [(trial_id, data)], epoch=ckpt.epoch)
        if self.pool is None:
            self.save(trial_id, ckpt.epoch, data)
        else:
            self.saving.append(self.pool.submit(self.save, trial_id, ckpt.epoch, data))

    def save(self, trial_id: str, epoch: int, data: bytes) -> None:
        self.run.results.checkpoints.save(trial_id, epoch, data)
        self.run.checkpointed.add(trial_id)

    def wait(self) -> None:
        saving, self.saving = self.saving, []
        for future in saving:
            future.result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def final_state_bytes(result) -> bytes:
    """A finished point's final train state, in the checkpoint format."""
    import flax.serialization

    from tiltsweep.trainers import Checkpoint

    return Checkpoint(result.epochs, flax.serialization.to_state_dict(result.state), [], result.wall_seconds).to_bytes()
