"""Train one grid point. The entry point the sweep layer calls:

    result = train(config, on_eval=None, checkpoint=None, on_checkpoint=None)

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

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import flax.serialization
import jax
import numpy as np

from trainers.checkpoint import Checkpoint, plain_row
from trainers.config import TrialConfig
from trainers.data import Dataset, load_dataset
from trainers.engine import Engine, Spec, TrainState, device_data, engine_for
from trainers.optim import OptimizerKind, hyperparameters


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
    )


@dataclass
class Prepared:
    """What one trial runs on: its engine (shared per shape), its arrays and its numbers."""

    cfg: TrialConfig
    engine: Engine
    data: dict[str, Any]
    hyper: dict[str, Any]

    @property
    def steps_per_epoch(self) -> int:
        return self.engine.spec.steps_per_epoch

    def fresh_state(self) -> TrainState:
        return self.engine.init_state(jax.random.PRNGKey(self.cfg.seed), self.hyper)

    def restore(self, ckpt: Checkpoint) -> TrainState:
        return flax.serialization.from_state_dict(self.fresh_state(), ckpt.state)

    def evaluate(self, state: TrainState) -> dict:
        step = int(state.step)
        metrics = plain_row(jax.device_get(self.engine.evaluate(state, self.hyper, self.data)))
        return {"step": step, "epoch": step // self.steps_per_epoch, **metrics}


def prepare(cfg: TrialConfig) -> Prepared:
    if cfg.training.dtype == "float64" and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    dataset = dataset_for(cfg)
    spec = spec_for(cfg, dataset)
    data = device_data(dataset, cfg.training.dtype, cfg.training.eval_batch_size)
    hyper = jax.device_put(hyperparameters(cfg, spec.steps_per_epoch, np.dtype(cfg.training.dtype)))
    return Prepared(cfg, engine_for(spec), data, hyper)


def stopping_points(start: int, epochs: int, eval_every: int, checkpoint_every: Optional[int]) -> list[int]:
    """Epochs after `start` at which training pauses to evaluate or checkpoint, ending at `epochs`."""
    points = set(range(eval_every, epochs, eval_every)) | {epochs}
    if checkpoint_every:
        points |= set(range(checkpoint_every, epochs, checkpoint_every))
    return sorted(p for p in points if p > start)


def is_finite_row(row: dict) -> bool:
    return all(math.isfinite(row[name]) for name in ("train_loss", "weighted_loss"))


def train(
    config,
    on_eval: Optional[Callable[[dict], None]] = None,
    checkpoint: Optional[Checkpoint] = None,
    on_checkpoint: Optional[Callable[[Checkpoint], None]] = None,
) -> TrainResult:
    cfg = config if isinstance(config, TrialConfig) else TrialConfig.model_validate(config)
    run = prepare(cfg)
    training = cfg.training
    report = on_eval or (lambda row: None)

    if checkpoint is None:
        state, history, epoch, spent = run.fresh_state(), [], 0, 0.0
        history.append(run.evaluate(state))
        report(history[-1])
    else:
        state, history, epoch, spent = run.restore(checkpoint), list(checkpoint.history), checkpoint.epoch, checkpoint.wall_seconds

    started = time.perf_counter()
    elapsed = lambda: spent + time.perf_counter() - started
    for stop in stopping_points(epoch, training.epochs, training.eval_every, training.checkpoint_every):
        state, first_bad = run.engine.train_epochs(state, run.hyper, run.data, stop - epoch)
        first_bad = int(first_bad)
        if first_bad >= 0:
            return TrainResult("diverged", history, first_bad, epoch, elapsed(), f"the loss became non-finite at step {first_bad}", state)
        epoch = stop
        if stop % training.eval_every == 0 or stop == training.epochs:
            row = run.evaluate(state)
            if not is_finite_row(row):
                return TrainResult("diverged", history, row["step"], epoch, elapsed(), f"the loss became non-finite by step {row['step']}", state)
            history.append(row)
            report(row)
        if on_checkpoint and training.checkpoint_every and stop % training.checkpoint_every == 0 and stop < training.epochs:
            state_dict = flax.serialization.to_state_dict(jax.device_get(state))
            on_checkpoint(Checkpoint(epoch, state_dict, list(history), elapsed()))
    return TrainResult("completed", history, int(state.step), epoch, elapsed(), "", state)
