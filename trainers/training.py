"""Train grid points. The entry points the sweep layer calls:

    result = train(config, on_eval=None, checkpoint=None, on_checkpoint=None)
    results = train_group(configs, on_eval=None, checkpoints=None, on_checkpoint=None)

train_group trains several points of one batch_signature in one compiled program (vmap), as
`training.batch_points` asks; its callbacks also receive the member's index.

- `config`: a TrialConfig or a plain dict of one;
- `on_eval(row)`: called after every evaluation (every `training.eval_every` epochs, at epoch 0
  and at the end) with {step, epoch, train/val loss and accuracy, weighted_loss F(t),
  weighted_loss_change F(t) - F(t-1), learning_rate, amplitude, emphasized_class, emphasized_weight};
- `checkpoint`: a Checkpoint to resume from; the resumed run gives the same metrics as one that
  was never stopped;
- `on_checkpoint(ckpt)`: called every `training.checkpoint_every` epochs before the end.

A loss that becomes NaN or infinite ends the run with status `diverged`; the result then holds the
evaluations up to the last finite one. The trainer never raises for a divergence.
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import flax.serialization
import jax
import jax.extend.core
import numpy as np

from tiltsweep.trainers.checkpoint import Checkpoint
from tiltsweep.trainers.compilation.share import build_in_turn
from tiltsweep.trainers.config import TrialConfig, batch_signature, kept_dtype
from tiltsweep.trainers.data import Dataset, load_dataset
from tiltsweep.trainers.engine import Engine, Spec, TrainState, device_data, engine_for, no_bad_step
from tiltsweep.trainers.optim import OptimizerKind, hyperparameters


@dataclass
class TrainResult:
    status: str  # "completed" or "diverged"
    history: list[dict]
    steps: int
    epochs: int
    wall_seconds: float
    message: str = ""
    state: Optional[TrainState] = field(default=None, repr=False)

    @property
    def final(self) -> dict:
        """The last finite evaluation."""
        return self.history[-1]

    @property
    def best_val_accuracy(self) -> float:
        return max(row["val_accuracy"] for row in self.history)


_DATASETS: dict[str, Dataset] = {}


def dataset_for(cfg: TrialConfig) -> Dataset:
    """The trial's dataset; trials in one worker share the copies they have loaded recently."""
    key = cfg.data.model_dump_json()
    if key not in _DATASETS:
        if len(_DATASETS) >= 4:
            _DATASETS.pop(next(iter(_DATASETS)))
        _DATASETS[key] = load_dataset(cfg.data)
    return _DATASETS[key]


_DEVICE_DATA: dict[tuple, dict[str, Any]] = {}


def device_data_for(cfg: TrialConfig, dataset: Dataset) -> dict[str, Any]:
    """The trial's data as device arrays; consecutive trials on the same data share one copy
    (only the latest is kept: on an accelerator it holds device memory)."""
    hessian_batch = cfg.training.hessian_batch_size if cfg.training.hessian_every else None
    key = (cfg.data.model_dump_json(), kept_dtype(cfg.training.dtype), cfg.training.eval_batch_size, hessian_batch)
    if key not in _DEVICE_DATA:
        _DEVICE_DATA.clear()
        _DEVICE_DATA[key] = device_data(dataset, kept_dtype(cfg.training.dtype), cfg.training.eval_batch_size, hessian_batch)
    return _DEVICE_DATA[key]


def spec_for(cfg: TrialConfig, dataset: Dataset) -> Spec:
    n_train = len(dataset.x_train)
    batch = n_train if cfg.optimizer.batch_size == "full" else cfg.optimizer.batch_size
    if batch > n_train:
        raise ValueError(f"optimizer.batch_size ({batch}) is larger than the training set ({n_train} examples)")
    return Spec(
        model=cfg.model,
        num_classes=dataset.num_classes,
        input_shape=dataset.input_shape,
        n_train=n_train,
        batch_size=batch,
        loss=cfg.loss.name,
        shape=cfg.loss.shape,
        optimizer=OptimizerKind.of(cfg),
        dtype=cfg.training.dtype,
        augment=getattr(cfg.data, "augment", False),
        hessian=(cfg.training.hessian_top_k, cfg.training.hessian_order) if cfg.training.hessian_every else None,
    )


def stacked(trees: list):
    return jax.tree.map(lambda *leaves: np.stack(leaves), *trees)


def member(tree, index: int):
    return jax.tree.map(lambda leaf: leaf[index], tree)


@dataclass
class Prepared:
    """What one group of grid points runs on: their engine (shared per shape), the data they
    share, and their numbers stacked along a leading axis."""

    cfgs: list[TrialConfig]
    engine: Engine
    data: dict[str, Any]
    hypers: dict[str, Any]

    @property
    def steps_per_epoch(self) -> int:
        return self.engine.spec.steps_per_epoch

    @functools.cached_property
    def keys(self) -> np.ndarray:
        """Each member's base PRNG key, from its seed."""
        return np.stack([np.asarray(jax.random.PRNGKey(cfg.seed)) for cfg in self.cfgs])

    def fresh_states(self) -> TrainState:
        return self.engine.init_states(self.keys, self.hypers)

    def build_programs(self, with_hessian: bool, compile_only: bool = False) -> dict[str, str]:
        """Compile (or load) the initialization and the training loop with its evaluation (and,
        for a model stepped from the host, its step) before training starts, splitting the
        compiling with the other workers of this machine that start the same programs
        (trainers.compilation.share). The loop is built on zero-valued states of the
        initialization's shapes, for 0 epochs, so it need not wait for the initialization.
        `compile_only`: compiled into the persistent cache and never run (sweep.run.warmup)."""
        keys = self.keys
        signature = "|".join([
            jax.__version__, os.environ.get("XLA_FLAGS", ""), f"x64={jax.config.jax_enable_x64}",
            repr(self.engine.spec), str(jax.tree.map(lambda a: (a.shape, str(a.dtype)), (keys, self.hypers, self.data))),
        ])

        def build_loop() -> None:
            shapes = jax.eval_shape(self.engine.init_states, keys, self.hypers)
            zeros = jax.device_put(jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), shapes))
            if compile_only:
                self.engine.compile_loop(zeros, self.hypers, self.data, with_hessian)
                return
            jax.block_until_ready(self.engine.train_then_evaluate(zeros, self.hypers, self.data, 0, with_hessian))
            if not self.engine.device_loop:  # a model stepped from the host: its step, which 0 epochs never call
                jax.block_until_ready(self.engine.host_step(zeros, self.hypers, self.data, no_bad_step(len(keys))))

        def build_init() -> None:
            if compile_only:
                self.engine.compile_init(keys, self.hypers)
            else:
                jax.block_until_ready(self.engine.init_states(keys, self.hypers))

        # The larger program first: a worker that starts later finds it claimed and takes the
        # smaller one, so that both are ready at about the same time.
        return build_in_turn([(f"loop|hessian={with_hessian}|{signature}", build_loop), (f"init|{signature}", build_init)],
                             jax.config.jax_compilation_cache_dir)

    def restore(self, states: list[dict]) -> TrainState:
        """The group's train states from one flax state dict per member (e.g. Checkpoint.state)."""
        template = jax.device_get(self.fresh_states())
        members = [flax.serialization.from_state_dict(member(template, i), state) for i, state in enumerate(states)]
        return jax.device_put(stacked(members))


def prepare(cfgs: list[TrialConfig]) -> Prepared:
    signatures = {batch_signature(cfg) for cfg in cfgs}
    if len(signatures) != 1:
        raise ValueError("grid points trained together must share data, model, batch size, schedule kind and training settings")
    first = cfgs[0]
    if first.training.dtype == "float64" and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    dataset = dataset_for(first)
    spec = spec_for(first, dataset)
    data = device_data_for(first, dataset)
    dtype = np.dtype(kept_dtype(first.training.dtype))
    hypers = jax.device_put(stacked([hyperparameters(cfg, spec.steps_per_epoch, dtype) for cfg in cfgs]))
    return Prepared(list(cfgs), engine_for(spec), data, hypers)


_POINT_BYTES: dict[str, int] = {}


def point_bytes(cfg: TrialConfig) -> int:
    """About the device memory one more point of a vmapped group takes, from shapes alone
    (traced, nothing compiled): its train state and gradients, and every value that one of its
    training steps, or its evaluation, makes, counted as if all were alive at once. That bounds
    its activations and scratch from above: a digits MLP of width 1,000 and depth 3 counts 201 MB
    a point, against 17 MB of state and gradients. One count per batch signature and process."""
    signature = batch_signature(cfg)
    if signature not in _POINT_BYTES:
        run = prepare([cfg])
        shapes = jax.eval_shape(run.engine.init_states, run.keys, run.hypers)
        size = lambda tree: sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree))
        made = max(values_bytes(jaxpr.jaxpr) for jaxpr in run.engine.traced_member(shapes, run.hypers, run.data))
        _POINT_BYTES[signature] = size(shapes) + size(shapes.params) + made
    return _POINT_BYTES[signature]


def values_bytes(jaxpr) -> int:
    """The bytes of every value a jaxpr's equations make: an equation's outputs, or, for one that
    runs jaxprs of its own (a called function, a loop's body, a branch), the larger of those and
    the most that one of its jaxprs makes (a scan's stacked outputs can be the larger)."""
    total = 0
    for eqn in jaxpr.eqns:
        inner = [getattr(found, "jaxpr", found) for param in eqn.params.values() for found in (param if isinstance(param, (tuple, list)) else [param])
                 if isinstance(found, (jax.extend.core.ClosedJaxpr, jax.extend.core.Jaxpr))]
        outputs = sum(math.prod(v.aval.shape) * v.aval.dtype.itemsize for v in eqn.outvars if hasattr(v.aval, "dtype"))
        total += max([outputs, *(values_bytes(each) for each in inner)])
    return total


def hessian_epochs(training, steps_per_epoch: int) -> set[int]:
    """The epochs whose evaluation also measures the Hessian: the first at or after every
    multiple of `hessian_every` steps (epoch 0 included)."""
    if not training.hessian_every:
        return set()
    steps = range(0, training.epochs * steps_per_epoch + 1, training.hessian_every)
    return {min(-(-step // steps_per_epoch), training.epochs) for step in steps}


def stopping_points(start: int, epochs: int, eval_every: int, checkpoint_every: Optional[int], extra=()) -> list[int]:
    """Epochs after `start` at which training pauses to evaluate or checkpoint (or at the `extra`
    epochs), ending at `epochs`."""
    points = set(range(eval_every, epochs, eval_every)) | {epochs} | set(extra)
    if checkpoint_every:
        points |= set(range(checkpoint_every, epochs, checkpoint_every))
    return sorted(p for p in points if p > start)


def padded_size(n: int, width: Optional[int], backend: str) -> int:
    """How many members a group of n real ones trains as, in a sweep of blocks `width` points
    wide, on `backend` (as jax.default_backend() names it): on a CPU n, as time there grows with
    every member; elsewhere n rounded up to a power of two, at most `width` (never below n), as an
    accelerator compiles a new block size in seconds but runs a block of a few hundred points in
    about the time of one: a partial block then runs one of the programs for 1, 2, 4, ... and
    `width` points, at most twice its work."""
    if not width or n >= width or backend == "cpu":
        return n
    return min(width, 1 << (n - 1).bit_length())


def padded(members: list, width: Optional[int], backend: str) -> list:
    """members, and copies of the last of them up to `padded_size`."""
    return members + members[-1:] * (padded_size(len(members), width, backend) - len(members))


def build_group_programs(configs: Sequence[TrialConfig], width: Optional[int] = None) -> dict[str, str]:
    """Compile into the persistent cache the programs that `train_group(configs, width=width)`
    builds before it trains a fresh group, and run none of them: another process's head start
    on them (sweep.run.warmup). Returns Prepared.build_programs' account."""
    cfgs = padded(list(configs), width, jax.default_backend())
    run = prepare(cfgs)
    return run.build_programs(with_hessian=0 in hessian_epochs(cfgs[0].training, run.steps_per_epoch), compile_only=True)


def is_finite_row(row: dict) -> bool:
    return all(math.isfinite(row[name]) for name in ("train_loss", "weighted_loss"))


def train_group(
    configs: Sequence,
    on_eval: Optional[Callable[[int, dict], None]] = None,
    checkpoints: Optional[Sequence[Optional[Checkpoint]]] = None,
    on_checkpoint: Optional[Callable[[int, Checkpoint], None]] = None,
    width: Optional[int] = None,
    backend: Optional[str] = None,
) -> list[TrainResult]:
    """Train several grid points of one batch_signature together; callbacks get the member's
    index. All start fresh, or all resume from checkpoints of the same epoch. A member whose loss
    stops being finite is finished as `diverged`; the others go on.

    `width` is the block width (training.batch_points) of a sweep whose last, partial block this
    may be. On an accelerator the group is padded to `padded_size`: n members to the next power
    of two, at most `width`, with copies of its last member, whose results, callbacks and
    checkpoints are dropped; on a CPU it is never padded. `backend` is the one that rule
    follows (default: JAX's)."""
    cfgs = [c if isinstance(c, TrialConfig) else TrialConfig.model_validate(c) for c in configs]
    checkpoints = list(checkpoints or [None] * len(cfgs))
    members = range(len(cfgs))  # the real ones; the padding trains along, unreported
    backend = backend or jax.default_backend()
    cfgs, checkpoints = padded(cfgs, width, backend), padded(checkpoints, width, backend)
    real = lambda tree: jax.tree.map(lambda leaf: leaf[: len(members)], tree) if len(cfgs) > len(members) else tree
    run = prepare(cfgs)
    training = cfgs[0].training
    report = on_eval or (lambda index, row: None)
    measured = hessian_epochs(training, run.steps_per_epoch)
    fresh = all(ckpt is None for ckpt in checkpoints)
    run.build_programs(with_hessian=fresh and 0 in measured)
    if fresh:
        states, epoch, spent = run.fresh_states(), 0, 0.0
        # Zero epochs of the training program: the first evaluation needs no compilation of its own.
        states, evaluation = run.engine.train_then_evaluate(states, run.hypers, run.data, 0, 0 in measured)
        histories = [[row] for row in run.engine.rows(evaluation)[1][: len(members)]]
        for i in members:
            report(i, histories[i][0])
    else:
        if any(ckpt is None for ckpt in checkpoints) or len({ckpt.epoch for ckpt in checkpoints}) != 1:
            raise ValueError("a group resumes only when every member has a checkpoint of the same epoch")
        states, epoch = run.restore([ckpt.state for ckpt in checkpoints]), checkpoints[0].epoch
        histories = [list(ckpt.history) for ckpt in checkpoints[: len(members)]]
        spent = max(ckpt.wall_seconds for ckpt in checkpoints)

    started = time.perf_counter()
    elapsed = lambda: spent + time.perf_counter() - started
    results: list[Optional[TrainResult]] = [None] * len(members)

    def diverge(i: int, step: int, message: str) -> None:
        results[i] = TrainResult("diverged", histories[i], step, epoch, elapsed(), message)

    for stop in stopping_points(epoch, training.epochs, training.eval_every, training.checkpoint_every, measured):
        evaluating = stop % training.eval_every == 0 or stop == training.epochs or stop in measured
        if evaluating:
            states, evaluation = run.engine.train_then_evaluate(states, run.hypers, run.data, stop - epoch, stop in measured)
            first_bad, rows = run.engine.rows(evaluation)
        else:
            states, first_bad = run.engine.train_epochs(states, run.hypers, run.data, stop - epoch)
            first_bad = jax.device_get(first_bad)
        for i in members:
            if results[i] is not None:
                continue
            if first_bad[i] >= 0:
                diverge(i, int(first_bad[i]), f"the loss became non-finite at step {int(first_bad[i])}")
            elif evaluating and not is_finite_row(rows[i]):
                diverge(i, rows[i]["step"], f"the loss became non-finite by step {rows[i]['step']}")
            elif evaluating:
                histories[i].append(rows[i])
                report(i, rows[i])
        epoch = stop
        if all(result is not None for result in results):
            return results
        if on_checkpoint and training.checkpoint_every and stop % training.checkpoint_every == 0 and stop < training.epochs:
            host = jax.device_get(real(states))
            for i in members:
                if results[i] is None:
                    on_checkpoint(i, Checkpoint(epoch, flax.serialization.to_state_dict(member(host, i)), list(histories[i]), elapsed()))
    final = jax.device_get(real(states))
    for i in members:
        if results[i] is None:
            results[i] = TrainResult("completed", histories[i], int(final.step[i]), epoch, elapsed(), "", member(final, i))
    return results


def train_evaluated(config, evaluations: int) -> TrainResult:
    """One point trained from its seed over its epochs and evaluated at step 0 and then every
    max(1, steps // evaluations) optimizer steps and at the end, whatever its eval_every says:
    the range test's schedule, which may need evaluations within an epoch. Its steps are taken
    from the host (Engine.host_step), so its numbers are not bit for bit those of `train`."""
    cfg = config if isinstance(config, TrialConfig) else TrialConfig.model_validate(config)
    run = prepare([cfg])
    total = cfg.training.epochs * run.steps_per_epoch
    steps = max(1, total // evaluations)
    started = time.perf_counter()
    states, history, done, next_steps = run.fresh_states(), [], 0, 0  # the first evaluation at step 0
    while True:
        states, evaluation = run.engine.train_steps_then_evaluate(states, run.hypers, run.data, next_steps)
        first_bad, rows = run.engine.rows(evaluation)
        done = rows[0]["step"]
        next_steps = min(steps, total - done)
        if first_bad[0] >= 0 or not is_finite_row(rows[0]):
            step = first_bad[0] if first_bad[0] >= 0 else done
            return TrainResult("diverged", history, step, done // run.steps_per_epoch, time.perf_counter() - started,
                               f"the loss became non-finite at step {step}")
        history.append(rows[0])
        if done >= total:
            return TrainResult("completed", history, done, cfg.training.epochs, time.perf_counter() - started, "", member(jax.device_get(states), 0))


def train(
    config,
    on_eval: Optional[Callable[[dict], None]] = None,
    checkpoint: Optional[Checkpoint] = None,
    on_checkpoint: Optional[Callable[[Checkpoint], None]] = None,
) -> TrainResult:
    """One grid point: a group of one."""
    return train_group(
        [config],
        on_eval=(lambda index, row: on_eval(row)) if on_eval else None,
        checkpoints=[checkpoint],
        on_checkpoint=(lambda index, ckpt: on_checkpoint(ckpt)) if on_checkpoint else None,
    )[0]
