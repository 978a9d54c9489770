"""Optimizers and learning-rate schedules whose numbers are traced values, not constants.

A trial's numbers (A, T, stop step, learning rate, momentum, schedule knots, ...) travel into the
compiled step as a pytree of scalars, `hyper`. The optax transformation is rebuilt from it inside
the traced function, so one compilation serves every grid point of the same shapes; only the
*kind* of optimizer and schedule (and whether there is momentum) is static.

Update rule: params <- params - lr(t) * u, where u is
- sgd:  trace_momentum(g + weight_decay * params)  (plain gradient when momentum is 0);
- adam: adam_direction(g) + weight_decay * params  (decoupled weight decay, as AdamW).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import optax

from tiltsweep.trainers.config import TrialConfig


@dataclass(frozen=True)
class OptimizerKind:
    """The static part: what changes the compiled program's structure."""

    name: str
    momentum: bool
    nesterov: bool
    schedule: str
    knots: int

    @classmethod
    def of(cls, cfg: TrialConfig) -> "OptimizerKind":
        opt = cfg.optimizer
        knots = len(cfg.schedule.knots) if cfg.schedule.name == "piecewise_linear" else 0
        return cls(opt.name, opt.momentum > 0, opt.nesterov, cfg.schedule.name, knots)


def hyperparameters(cfg: TrialConfig, steps_per_epoch: int, dtype) -> dict[str, np.ndarray]:
    """The traced numbers of one trial, each a scalar (or knot vector) of `dtype`."""
    opt, loss, sched = cfg.optimizer, cfg.loss, cfg.schedule
    period = loss.period_in_steps(steps_per_epoch)
    stop = np.inf if loss.stop_oscillation_epoch is None else loss.stop_oscillation_epoch * steps_per_epoch
    values = {
        "amplitude": loss.amplitude,
        "period": period,
        "stop_step": stop,
        "learning_rate": opt.learning_rate,
        "momentum": opt.momentum,
        "weight_decay": opt.weight_decay,
        "b1": opt.b1,
        "b2": opt.b2,
        "eps": opt.eps,
        "total_steps": cfg.training.epochs * steps_per_epoch,
    }
    if sched.name == "piecewise_linear":
        values["knot_epochs"] = [epoch for epoch, _ in sched.knots]
        values["knot_scales"] = [scale for _, scale in sched.knots]
    elif sched.name == "cosine":
        values.update(warmup_epochs=sched.warmup_epochs, final_scale=sched.final_scale)
    elif sched.name == "triangular":
        values.update(base_lr=sched.base_lr, max_lr=sched.max_lr, step_size=sched.step_size)
    elif sched.name == "range_test":
        values.update(min_lr=sched.min_lr, max_lr=sched.max_lr, geometric=float(sched.spacing == "geometric"))
    return {name: np.asarray(value, dtype=dtype) for name, value in values.items()}


def learning_rate_at(step, hyper, kind: OptimizerKind, steps_per_epoch: int):
    """lr(t) for the schedule kind; `epoch` below is the fractional epoch t / steps_per_epoch.

    constant:          learning_rate
    piecewise_linear:  learning_rate * interp(epoch, knot_epochs, knot_scales)
    cosine:            learning_rate * (epoch / warmup during warm-up, then
                       final + (1 - final)(1 + cos(pi p)) / 2, p = (epoch - warmup) / (epochs - warmup))
    triangular:        base + (max - base) * (1 - |t / step_size mod 2 - 1|)
    range_test:        min + (max - min) * f, or with geometric spacing min * (max / min) ** f,
                       f = t / total_steps  (max at the end of the run)

    optax computes them: constant is optax.constant_schedule; cosine is optax.join_schedules of
    optax.linear_schedule (the warm-up) and optax.cosine_decay_schedule; triangular is
    optax.linear_schedule from max down to base over the distance from the peak,
    |t / step_size mod 2 - 1|; range_test is optax.linear_schedule from max down to min over the
    remaining fraction 1 - f, and with geometric spacing min * exp of optax.linear_schedule from
    log(max / min) down to 0 (min exactly at f = 0). piecewise_linear stays jnp.interp:
    optax.piecewise_interpolate_schedule interpolates between cumulative products of scales keyed
    by Python step numbers, which can neither start from a scale of 0 nor take traced knots.
    Every number here is traced (one compiled program trains every grid point of a shape), where
    optax's builders check lengths in Python (`transition_steps <= 0`, `decay_steps > 0`): so
    each optax schedule is built over a concrete unit length and evaluated at a traced fraction
    of it. optax's linear_schedule computes a rise from I to E at fraction x as (I - E)(1 - x) + E,
    so the warm-up and the range test differ from the formulas above in their last bits.
    """
    t = jnp.asarray(step, dtype=hyper["learning_rate"].dtype)
    epoch = t / steps_per_epoch
    if kind.schedule == "constant":
        return optax.constant_schedule(hyper["learning_rate"])(t)
    if kind.schedule == "piecewise_linear":
        return hyper["learning_rate"] * jnp.interp(epoch, hyper["knot_epochs"], hyper["knot_scales"])
    if kind.schedule == "cosine":
        warmup, final = hyper["warmup_epochs"], hyper["final_scale"]
        decay_epochs = jnp.maximum(hyper["total_steps"] / steps_per_epoch - warmup, 1e-12)
        warm = optax.linear_schedule(0.0, 1.0, transition_steps=1)
        decay = optax.cosine_decay_schedule(1.0, decay_steps=1, alpha=final, exponent=1)
        scale = optax.join_schedules(
            [lambda e: warm(e / jnp.maximum(warmup, 1e-12)), lambda e: decay(e / decay_epochs)], boundaries=[warmup]
        )
        return hyper["learning_rate"] * scale(epoch)
    if kind.schedule == "triangular":
        from_peak = jnp.abs(jnp.mod(t / hyper["step_size"], 2.0) - 1.0)
        return optax.linear_schedule(hyper["max_lr"], hyper["base_lr"], transition_steps=1)(from_peak)
    if kind.schedule == "range_test":
        remaining = 1.0 - t / jnp.maximum(hyper["total_steps"], 1.0)
        min_lr, max_lr = hyper["min_lr"], hyper["max_lr"]
        linear = optax.linear_schedule(max_lr, min_lr, transition_steps=1)(remaining)
        log_rise = optax.linear_schedule(jnp.log(max_lr / min_lr), 0.0, transition_steps=1)(remaining)
        return jnp.where(hyper["geometric"] > 0, min_lr * jnp.exp(log_rise), linear)
    raise ValueError(f"unknown schedule {kind.schedule!r}")


def update_direction(kind: OptimizerKind, hyper) -> optax.GradientTransformation:
    """u of the module docstring; callable with concrete numbers (init) or traced ones (step)."""
    if kind.name == "sgd":
        parts = [optax.add_decayed_weights(hyper["weight_decay"])]
        if kind.momentum:
            parts.append(optax.trace(decay=hyper["momentum"], nesterov=kind.nesterov))
        return optax.chain(*parts)
    if kind.name == "adam":
        return optax.chain(
            optax.scale_by_adam(b1=hyper["b1"], b2=hyper["b2"], eps=hyper["eps"]),
            optax.add_decayed_weights(hyper["weight_decay"]),
        )
    raise ValueError(f"unknown optimizer {kind.name!r}")
