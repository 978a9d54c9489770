"""The compiled training program, built once per static shape and reused for every grid point.

`Spec` holds everything that changes the program's structure (model, data shapes, batch size,
loss and optimizer kinds, dtype: the model's arithmetic; under bfloat16 everything else is kept
in float32, config.kept_dtype). Everything else (A, T, stop step, learning rate, schedule
numbers, the seed, the data itself) enters as arrays, so `engine_for(spec)` hands the same
jitted functions to every trial of that shape and XLA compiles each of them once.

The compiled functions train a *group* of grid points at once: train states and hyperparameters
carry a leading axis of length G (the data is shared), and one step of the group is the step of
each point, vmapped. G = 1 is the usual case (run without vmap, and without the group axis
inside the training loop); `training.batch_points` makes it larger. Evaluations come back as
a `Report` of two packed arrays; `Engine.rows` turns it into one row per point.

One optimizer step t (state.step = t before it):
    Gamma = class_weights(t, ...);  F(t) = dynamical_loss(f(x_batch), y_batch, Gamma)
    params <- params - lr(t) * u(grad F(t))          (see trainers.optim)
`train_epochs` runs whole epochs inside one while loop (minibatches in a seeded order per epoch,
`fold_in(key, 1)` then the epoch; augmentation keyed by `fold_in(key, 2)` then the step), records
each point's first step whose loss is not finite, and stops early once every point has one. The
loop's condition stays unbatched, so XLA does not turn the group's updates into selects.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np

from tiltsweep.trainers.hessian import hessian_top_eigenvalues
from tiltsweep.trainers.loss import PER_EXAMPLE_LOSSES, class_weights, dynamical_loss, emphasized_class, example_weights
from tiltsweep.trainers.config import MLPModel, kept_dtype
from tiltsweep.trainers.models import MLP, build_model, stax_params
from tiltsweep.trainers.optim import OptimizerKind, learning_rate_at, update_direction

INIT_STREAM, ORDER_STREAM, AUGMENT_STREAM, HESSIAN_STREAM = 0, 1, 2, 3


def flip_and_crop(key, images, pad: int = 4):
    """Image augmentation inside the step, deterministic in `key`: images (N, H, W, C) ->
    (N, H, W, C), each flipped left-right with probability 1/2, zero-padded by `pad` pixels on
    every side and cropped back to (H, W) at a uniformly random offset."""
    n, height, width, _ = images.shape
    flip_key, row_key, col_key = jax.random.split(key, 3)
    flips = jax.random.bernoulli(flip_key, 0.5, (n,))
    rows = jax.random.randint(row_key, (n,), 0, 2 * pad + 1)
    cols = jax.random.randint(col_key, (n,), 0, 2 * pad + 1)
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))

    def one(image, flip, row, col):
        image = jnp.where(flip, image[:, ::-1], image)
        return jax.lax.dynamic_slice(image, (row, col, 0), (height, width, image.shape[-1]))

    return jax.vmap(one)(padded, flips, rows, cols)


def each(fn, in_axes):
    """fn over the group axis (axis 0 of the arguments whose in_axes is 0). A group of one calls
    fn directly: vmapping a convolution over per-member kernels makes it a grouped convolution,
    which XLA runs many times slower on CPUs."""

    @functools.wraps(fn)  # keeps fn's name for jit, so compilations are counted by it
    def over_group(*args):
        size = next(jax.tree.leaves(a)[0].shape[0] for a, axis in zip(args, in_axes) if axis == 0)
        if size > 1:
            return jax.vmap(fn, in_axes=in_axes)(*args)
        alone = [jax.tree.map(lambda leaf: leaf[0], a) if axis == 0 else a for a, axis in zip(args, in_axes)]
        return jax.tree.map(lambda leaf: leaf[None], fn(*alone))

    return over_group


@dataclass(frozen=True)
class Spec:
    model: Any  # a frozen model config section
    num_classes: int
    input_shape: tuple[int, ...]
    n_train: int
    batch_size: int
    loss: str
    shape: str
    optimizer: OptimizerKind
    dtype: str
    augment: bool
    hessian: Optional[tuple[int, int]] = None  # (top k, Lanczos order) when the Hessian is tracked

    @property
    def steps_per_epoch(self) -> int:
        return self.n_train // self.batch_size

    @property
    def full_batch(self) -> bool:
        return self.batch_size == self.n_train


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer steps taken
    params: Any
    batch_stats: Any  # {} for models without batch norm
    opt_state: Any
    key: jax.Array  # the trial's base PRNG key; every random stream is folded from it
    last_loss: jax.Array  # F(t - 1), the weighted loss of the latest step


@flax.struct.dataclass
class Report:
    """A group's evaluation packed into two arrays, so that it reaches the host in two transfers
    rather than one per metric (about 10 us each on CPU).
    ints (G, 3): step, first non-finite step (-1 if none), emphasized class;
    floats (G, K): the metrics named by Engine.float_metrics, in that order."""

    ints: jax.Array
    floats: jax.Array


METRIC_ORDER = (
    "train_loss", "train_accuracy", "val_loss", "val_accuracy", "weighted_loss", "weighted_loss_change",
    "learning_rate", "amplitude", "emphasized_class", "emphasized_weight",
)


class Engine:
    def __init__(self, spec: Spec):
        self.spec = spec
        self.kept = jnp.dtype(kept_dtype(spec.dtype))  # parameters, data, loss and metrics (spec.dtype: the model's arithmetic)
        self.model = build_model(spec.model, spec.num_classes, jnp.dtype(spec.dtype), self.kept)
        # The same function of the same parameters, computed in the kept dtype: in bfloat16 the top
        # eigenvalue moved in its third digit from one Lanczos start to the next. An MLP's
        # Hessian-vector products run faster batch-major (benchmarks/README.md, "The cost of a
        # Hessian measurement").
        layout = {"layout": "batch_major"} if isinstance(self.model, MLP) else {}
        self.hessian_model = self.model.clone(dtype=self.kept, **layout)
        self.loss_of = PER_EXAMPLE_LOSSES[spec.loss]
        hessian_metrics = tuple(f"hessian_eig_{i + 1}" for i in range(spec.hessian[0])) if spec.hessian else ()
        self.metrics = METRIC_ORDER + hessian_metrics
        self.float_metrics = tuple(name for name in self.metrics if name != "emphasized_class")
        self._init_states = jax.jit(each(self._init_state, (0, 0)))
        self.evaluate = jax.jit(each(self._evaluate, (0, 0, None)))
        self.evaluate_with_hessian = jax.jit(each(self._evaluate_with_hessian, (0, 0, None)))
        # XLA's CPU backend compiles convolution gradients inside a loop body into something ~50x
        # slower than the same step as a plain call (benchmarks/README.md), so convolutional
        # models are stepped from the host, one call per step; MLPs, whose steps take
        # microseconds, keep the whole loop on the device.
        self.device_loop = isinstance(spec.model, MLPModel)
        self.host_step = jax.jit(each(self._host_step, (0, 0, None, 0)))  # compiled when first called
        if self.device_loop:
            self.train_epochs = jax.jit(self._train_epochs)
            self._compiled_train_then_evaluate = jax.jit(self._train_then_evaluate, static_argnames="with_hessian")
        else:
            self.train_epochs = self._train_epochs_from_host

    def train_then_evaluate(self, states: TrainState, hypers, data, epochs, with_hessian: bool = False):
        """Train `epochs` epochs, then evaluate every point (and, if asked, its Hessian):
        (states, Report)."""
        if self.device_loop:
            return self._compiled_train_then_evaluate(states, hypers, data, epochs, with_hessian=with_hessian)
        states, first_bad = self._train_epochs_from_host(states, hypers, data, epochs)
        return states, marked_on_host(self.evaluation(with_hessian)(states, hypers, data), first_bad)

    def train_steps_then_evaluate(self, states: TrainState, hypers, data, steps: int):
        """Train `steps` optimizer steps, one jitted step at a time from the host (an epoch need
        not end), then evaluate every point: (states, Report). For evaluations finer than an
        epoch, where a run is not to be repeated bit for bit by the epoch loop (the range test)."""
        first_bad = no_bad_step(states.step.shape[0])
        for _ in range(int(steps)):
            states, first_bad = self.host_step(states, hypers, data, first_bad)
        return states, marked_on_host(self.evaluate(states, hypers, data), first_bad)

    def compile_init(self, keys, hypers) -> None:
        """The initialization's program, compiled (into the persistent cache, where it is on), not run."""
        self._init_states.lower(keys, hypers).compile()

    def compile_loop(self, states: TrainState, hypers, data, with_hessian: bool) -> None:
        """The programs train_then_evaluate runs, compiled (into the persistent cache, where it is
        on), not run: the loop with its evaluation, or for a model stepped from the host, its
        evaluation and its step."""
        if self.device_loop:
            self._compiled_train_then_evaluate.lower(states, hypers, data, 0, with_hessian=with_hessian).compile()
            return
        self.evaluation(with_hessian).lower(states, hypers, data).compile()
        self.host_step.lower(states, hypers, data, no_bad_step(states.step.shape[0])).compile()

    def traced_member(self, states: TrainState, hypers, data) -> tuple:
        """The jaxprs of one member's training step and evaluation, traced (not compiled) from
        the shapes of a group's states and hyperparameters (arrays or jax.ShapeDtypeStructs):
        what training.point_bytes counts."""
        one = lambda tree: jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype), tree)
        state, hyper = one(states), one(hypers)
        evaluate = self._evaluate_with_hessian if self.spec.hessian else self._evaluate
        return (jax.make_jaxpr(self._host_step)(state, hyper, data, jax.ShapeDtypeStruct((), jnp.int32)),
                jax.make_jaxpr(evaluate)(state, hyper, data))

    def evaluation(self, with_hessian: bool):
        return self.evaluate_with_hessian if with_hessian else self.evaluate

    def rows(self, report: Report) -> tuple[list[int], list[dict]]:
        """The first non-finite step (or -1) and the evaluation row of every member, as Python
        numbers: {"step", "epoch", metric: value, ...}."""
        ints, floats = jax.device_get((report.ints, report.floats))
        first_bad, rows = [], []
        for (step, bad, emphasized), values in zip(ints.tolist(), floats.tolist()):
            named = dict(zip(self.float_metrics, values), emphasized_class=emphasized)
            first_bad.append(bad)
            rows.append({"step": step, "epoch": step // self.spec.steps_per_epoch, **{name: named[name] for name in self.metrics}})
        return first_bad, rows

    # --- pieces --------------------------------------------------------------------------------

    def init_states(self, keys, hypers) -> TrainState:
        """The group's first train states, from its members' keys."""
        states = self._init_states(keys, hypers)
        if isinstance(self.spec.model, MLPModel) and self.spec.model.init == "stax":
            # The notebook's start draws from the seed's key itself, op by op as the notebook
            # did (compiled as one program, the normal biases differ from it in their last bit).
            model, inputs = self.spec.model, math.prod(self.spec.input_shape)
            drawn = [stax_params(key, model.depth, model.width, inputs, self.spec.num_classes, self.kept) for key in keys]
            states = states.replace(params=jax.tree.map(lambda *leaves: jnp.stack(leaves), *drawn))
        return states

    def _init_state(self, key, hyper) -> TrainState:
        dummy = jnp.zeros((1, *self.spec.input_shape), self.kept)
        variables = self.model.init(jax.random.fold_in(key, INIT_STREAM), dummy, train=False)
        params = variables["params"]

        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            batch_stats=variables.get("batch_stats", {}),
            opt_state=update_direction(self.spec.optimizer, hyper).init(params),
            key=key,
            last_loss=jnp.full((), jnp.nan, self.kept),
        )

    def _apply(self, params, batch_stats, x, train: bool, model=None):
        """(logits in the kept dtype, so that the loss and metrics are float32 under bfloat16,
        the batch statistics)."""
        model = self.model if model is None else model
        variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
        if train and batch_stats:
            logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
            return logits.astype(self.kept), updates["batch_stats"]
        return model.apply(variables, x, train=train).astype(self.kept), batch_stats

    def _weights(self, step, hyper):
        return class_weights(
            step, self.spec.num_classes, hyper["amplitude"], hyper["period"], hyper["stop_step"], self.spec.shape
        )

    def _step(self, state: TrainState, hyper, x, y) -> TrainState:
        gamma = self._weights(state.step, hyper)

        def objective(params):
            logits, batch_stats = self._apply(params, state.batch_stats, x, train=True)
            return dynamical_loss(self.spec.loss, logits, y, gamma), batch_stats

        (loss, batch_stats), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        direction, opt_state = update_direction(self.spec.optimizer, hyper).update(
            grads, state.opt_state, state.params
        )
        lr = learning_rate_at(state.step, hyper, self.spec.optimizer, self.spec.steps_per_epoch)
        params = jax.tree.map(lambda p, u: p - lr.astype(p.dtype) * u, state.params, direction)
        return state.replace(
            step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state, last_loss=loss
        )

    def _order(self, state: TrainState):
        """The minibatches of the epoch `state` is in: (steps_per_epoch, batch_size) indices."""
        spec = self.spec
        epoch = state.step // spec.steps_per_epoch
        order_key = jax.random.fold_in(jax.random.fold_in(state.key, ORDER_STREAM), epoch)
        order = jax.random.permutation(order_key, spec.n_train)[: spec.steps_per_epoch * spec.batch_size]
        return order.reshape(spec.steps_per_epoch, spec.batch_size)

    def _checked_step(self, state: TrainState, hyper, batch_x, batch_y, first_bad):
        """One step on a batch (augmented if asked), noting the first step whose loss is not finite."""
        if self.spec.augment:
            batch_x = flip_and_crop(jax.random.fold_in(jax.random.fold_in(state.key, AUGMENT_STREAM), state.step), batch_x)
        state = self._step(state, hyper, batch_x, batch_y)
        newly_bad = (first_bad < 0) & ~jnp.isfinite(state.last_loss)
        return state, jnp.where(newly_bad, state.step - 1, first_bad)

    def _epoch(self, state: TrainState, hyper, data, first_bad):
        """One pass over the training set; first_bad is the first step with a non-finite loss, or -1."""
        if self.spec.full_batch:
            return self._checked_step(state, hyper, data["x_train"], data["y_train"], first_bad)
        order = self._order(state)

        def minibatch(i, carry):
            return self._checked_step(*carry[:1], hyper, data["x_train"][order[i]], data["y_train"][order[i]], carry[1])

        return jax.lax.fori_loop(0, self.spec.steps_per_epoch, minibatch, (state, first_bad))

    def _host_step(self, state: TrainState, hyper, data, first_bad):
        """The step `state.step` alone, its minibatch found from the step (the host-loop path)."""
        if self.spec.full_batch:
            return self._checked_step(state, hyper, data["x_train"], data["y_train"], first_bad)
        batch = self._order(state)[state.step % self.spec.steps_per_epoch]
        return self._checked_step(state, hyper, data["x_train"][batch], data["y_train"][batch], first_bad)

    # --- compiled entry points -------------------------------------------------------------------

    def _train_epochs(self, states: TrainState, hypers, data, epochs):
        """Train a group `epochs` whole epochs. Returns (states, first non-finite step of each
        point or -1); stops after the epoch in which the last healthy point stopped being finite."""
        group = states.step.shape[0]
        if group > 1:
            start = jnp.full((group,), -1, jnp.int32)
            return self._epoch_loop(each(self._epoch, (0, 0, None, 0)), states, hypers, data, epochs, start)
        # A group of one loses its group axis outside the loop: inside, the axis costs a copy of
        # every parameter per step.
        alone = lambda tree: jax.tree.map(lambda leaf: leaf[0], tree)
        state, first_bad = self._epoch_loop(self._epoch, alone(states), alone(hypers), data, epochs, jnp.int32(-1))
        return jax.tree.map(lambda leaf: leaf[None], state), first_bad[None]

    @staticmethod
    def _epoch_loop(epoch_fn, states, hypers, data, epochs, first_bad):
        """epoch_fn `epochs` times, or until every point has a non-finite loss."""

        def keep_going(carry):
            done, _, first_bad = carry
            return (done < epochs) & jnp.any(first_bad < 0)

        def body(carry):
            done, states, first_bad = carry
            states, first_bad = epoch_fn(states, hypers, data, first_bad)
            return done + 1, states, first_bad

        _, states, first_bad = jax.lax.while_loop(keep_going, body, (jnp.zeros((), jnp.int32), states, first_bad))
        return states, first_bad

    def _train_epochs_from_host(self, states: TrainState, hypers, data, epochs):
        """_train_epochs as a host loop over jitted steps, checking for divergence every epoch."""
        first_bad = no_bad_step(states.step.shape[0])
        for _ in range(int(epochs)):
            for _ in range(self.spec.steps_per_epoch):
                states, first_bad = self.host_step(states, hypers, data, first_bad)
            if (np.asarray(first_bad) >= 0).all():  # on the host: no program of its own to compile
                break
        return states, first_bad

    def _train_then_evaluate(self, states: TrainState, hypers, data, epochs, with_hessian: bool):
        """_train_epochs and then the evaluation of every point (with its Hessian, if asked), in
        one call (one dispatch, one transfer back)."""
        states, first_bad = self._train_epochs(states, hypers, data, epochs)
        evaluate = self._evaluate_with_hessian if with_hessian else self._evaluate
        return states, with_first_bad(each(evaluate, (0, 0, None))(states, hypers, data), first_bad)

    def _evaluate_with_hessian(self, state: TrainState, hyper, data) -> Report:
        return self._evaluate(state, hyper, data, with_hessian=True)

    def _hessian_eigenvalues(self, state: TrainState, hyper, data):
        """The top k eigenvalues of the Hessian of F(t) at t = state.step, on the Hessian batch,
        with the model in evaluation mode (batch-norm running averages): a function of the
        parameters alone, computed in the kept dtype (float32 under bfloat16)."""
        k, order = self.spec.hessian
        gamma = self._weights(state.step, hyper)

        def loss(params):
            logits, _ = self._apply(params, state.batch_stats, data["hessian_x"], train=False, model=self.hessian_model)
            return dynamical_loss(self.spec.loss, logits, data["hessian_y"], gamma)

        key = jax.random.fold_in(jax.random.fold_in(state.key, HESSIAN_STREAM), state.step)
        return hessian_top_eigenvalues(loss, state.params, key, order, k)

    def _evaluate(self, state: TrainState, hyper, data, with_hessian: bool = False) -> Report:
        """Unweighted loss and accuracy on both splits, F(t) on the training set, and where the
        oscillation stands at step t = state.step; when the Hessian is tracked, hessian_eig_1..k
        (NaN unless with_hessian). Packed as a Report, first_bad -1."""
        gamma = self._weights(state.step, hyper)

        def split_sums(batches):
            def one(batch):
                x, y, mask = batch
                logits, _ = self._apply(state.params, state.batch_stats, x, train=False)
                per_example = self.loss_of(logits, y)
                correct = jnp.argmax(logits, axis=-1) == y
                return jnp.stack([
                    jnp.sum(per_example * mask),
                    jnp.sum(example_weights(y, gamma) * per_example * mask),
                    jnp.sum(correct * mask),
                    jnp.sum(mask),
                ])

            return jnp.sum(jax.lax.map(one, batches), axis=0)

        train = split_sums(data["train_eval"])
        val = split_sums(data["val_eval"])
        weighted = train[1] / train[3]
        c = emphasized_class(state.step, hyper["period"], self.spec.num_classes)
        amplitude = jnp.where(state.step >= hyper["stop_step"], 1.0, hyper["amplitude"])
        metrics = {
            "train_loss": train[0] / train[3],
            "train_accuracy": train[2] / train[3],
            "val_loss": val[0] / val[3],
            "val_accuracy": val[2] / val[3],
            "weighted_loss": weighted,
            "weighted_loss_change": weighted - state.last_loss,
            "learning_rate": learning_rate_at(state.step, hyper, self.spec.optimizer, self.spec.steps_per_epoch),
            "amplitude": amplitude,
            "emphasized_class": c,
            "emphasized_weight": gamma[c],
        }
        if self.spec.hessian:
            k = self.spec.hessian[0]
            eigenvalues = self._hessian_eigenvalues(state, hyper, data) if with_hessian else jnp.full((k,), jnp.nan, weighted.dtype)
            metrics.update({f"hessian_eig_{i + 1}": eigenvalues[i] for i in range(k)})
        assert set(metrics) == set(self.metrics), "METRIC_ORDER and the metrics computed here must name the same"
        return Report(
            ints=jnp.stack([state.step, jnp.int32(-1), c]).astype(jnp.int32),
            floats=jnp.stack([jnp.asarray(metrics[name], weighted.dtype) for name in self.float_metrics]),
        )


def no_bad_step(group: int) -> np.ndarray:
    """The first non-finite step of each of a group's points before any step: -1 (a host array:
    the first jitted step takes it in, and no program is compiled to make it)."""
    return np.full((group,), -1, np.int32)


def with_first_bad(report: Report, first_bad) -> Report:
    """The report with each point's first non-finite step (or -1), inside a compiled program."""
    return report.replace(ints=report.ints.at[:, 1].set(first_bad))


def marked_on_host(report: Report, first_bad) -> Report:
    """with_first_bad for a host loop's report, in NumPy: an eager scatter would compile programs
    of its own in every worker. Its integers come to the host here, as Engine.rows takes them next."""
    ints = np.array(report.ints)
    ints[:, 1] = np.asarray(first_bad)
    return report.replace(ints=ints)


_ENGINES: dict[Spec, Engine] = {}


def engine_for(spec: Spec) -> Engine:
    """The one Engine of this shape in this process (its jitted functions compile once)."""
    if spec not in _ENGINES:
        _ENGINES[spec] = Engine(spec)
    return _ENGINES[spec]


def eval_batches(x: np.ndarray, y: np.ndarray, batch_size: int):
    """(x, y, mask) reshaped to (batches, batch_size, ...), zero-padded; mask marks real examples."""
    batch_size = min(batch_size, len(x))
    batches = -(-len(x) // batch_size)
    padding = batches * batch_size - len(x)
    mask = np.concatenate([np.ones(len(x)), np.zeros(padding)]).astype(x.dtype)
    x = np.concatenate([x, np.zeros((padding, *x.shape[1:]), x.dtype)])
    y = np.concatenate([y, np.zeros(padding, y.dtype)])
    shape = (batches, batch_size)
    return x.reshape(shape + x.shape[1:]), y.reshape(shape), mask.reshape(shape)


def device_data(dataset, dtype: str, eval_batch_size: int, hessian_batch_size: Optional[int] = None) -> dict[str, Any]:
    """The arrays a trial trains and evaluates on, as jit arguments (not constants). With a
    hessian_batch_size, also the Hessian's batch: the training set, or a fixed random subset."""
    x_train = np.asarray(dataset.x_train, dtype)
    x_val = np.asarray(dataset.x_val, dtype)
    data = {
        "x_train": x_train,
        "y_train": dataset.y_train,
        "train_eval": eval_batches(x_train, dataset.y_train, eval_batch_size),
        "val_eval": eval_batches(x_val, dataset.y_val, eval_batch_size),
    }
    if hessian_batch_size:
        chosen = np.sort(np.random.RandomState(0).permutation(len(x_train))[:hessian_batch_size])
        data["hessian_x"], data["hessian_y"] = x_train[chosen], dataset.y_train[chosen]
    return jax.device_put(data)
