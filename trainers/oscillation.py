"""The oscillation of the dynamical loss's class weights, Gamma_i(t), exactly as DESIGN.md
defines it, in any array library with NumPy's API: NumPy (the default: figures draw Gamma_i(t)
from it, loading no JAX) or jax.numpy (trainers.loss, inside the compiled training step).

    k = floor(t / T)            cycle;  c(t) = k mod C, the emphasized class (round robin)
    tau = t - k T               phase in [0, T)
    g = 1 + (A - 1) (1 - |2 tau / T - 1|)        triangle (default): 1 -> A at T/2 -> 1
    g = 1 + (A - 1) sin^2(pi tau / T)            cosine
    raw_i = g if i == c(t) else 1;   Gamma_i(t) = C raw_i / sum_j raw_j   (so sum_i Gamma_i = C)

From `stop_step` on, A is 1. `step` may be a scalar or an array of steps (Gamma then has a
trailing class axis); A, T and stop_step may be traced values.
"""

from __future__ import annotations

import numpy as np


def oscillation_phase(step, period, xp=np):
    """(emphasized class index before the modulo C, phase fraction tau / T in [0, 1))."""
    step = xp.asarray(step, dtype=xp.result_type(period, xp.float32))
    cycle = xp.floor(step / period)
    return cycle, (step - cycle * period) / period


def emphasis(step, amplitude, period, stop_step, shape: str = "triangle", xp=np):
    """The raw weight g(t) of the emphasized class: 1 <= g <= A, and 1 from stop_step on."""
    _, phase = oscillation_phase(step, period, xp)
    if shape == "triangle":
        profile = 1.0 - xp.abs(2.0 * phase - 1.0)
    elif shape == "cosine":
        profile = xp.sin(xp.pi * phase) ** 2
    else:
        raise ValueError(f"unknown oscillation shape {shape!r}")
    effective_amplitude = xp.where(step >= stop_step, 1.0, amplitude)
    return 1.0 + (effective_amplitude - 1.0) * profile


def emphasized_class(step, period, num_classes: int, xp=np):
    """c(t) = floor(t / T) mod C, as int32."""
    cycle, _ = oscillation_phase(step, period, xp)
    return xp.mod(cycle, num_classes).astype(xp.int32)


def class_weights(step, num_classes: int, amplitude, period, stop_step, shape: str = "triangle", xp=np):
    """Gamma(t), shape (..., C): C * raw / sum(raw), summing to C."""
    g = emphasis(step, amplitude, period, stop_step, shape, xp)
    emphasized = xp.arange(num_classes) == xp.expand_dims(emphasized_class(step, period, num_classes, xp), -1)
    raw = xp.where(emphasized, xp.expand_dims(g, -1), 1.0)
    return num_classes * raw / xp.sum(raw, axis=-1, keepdims=True)
