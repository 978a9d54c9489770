"""The dynamical loss of Ruiz-Garcia et al. (ICML 2021), exactly as DESIGN.md defines it.

Classes i = 0..C-1, optimizer step t, period T (steps), amplitude A >= 1:

    k = floor(t / T)            cycle;  c(t) = k mod C, the emphasized class (round robin)
    tau = t - k T               phase in [0, T)
    g = 1 + (A - 1) (1 - |2 tau / T - 1|)        triangle (default): 1 -> A at T/2 -> 1
    g = 1 + (A - 1) sin^2(pi tau / T)            cosine
    raw_i = g if i == c(t) else 1;   Gamma_i(t) = C raw_i / sum_j raw_j   (so sum_i Gamma_i = C)
    F(t) = (1/P) sum_j Gamma_{y_j}(t) * l(f(x_j), y_j)

with l the softmax cross-entropy (`dynamical_cross_entropy`) or the squared error against the
one-hot target, summed over classes (`dynamical_mse`). From `stop_step` on, A is 1, and with
A = 1 every Gamma_i is 1: F is then the plain loss.

All functions are pure and jittable; A, T and stop_step may be traced values.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def oscillation_phase(step, period):
    """(emphasized class index before the modulo C, phase fraction tau / T in [0, 1))."""
    step = jnp.asarray(step, dtype=jnp.result_type(period, jnp.float32))
    cycle = jnp.floor(step / period)
    return cycle, (step - cycle * period) / period


def emphasis(step, amplitude, period, stop_step, shape: str = "triangle"):
    """The raw weight g(t) of the emphasized class: 1 <= g <= A, and 1 from stop_step on."""
    _, phase = oscillation_phase(step, period)
    if shape == "triangle":
        profile = 1.0 - jnp.abs(2.0 * phase - 1.0)
    elif shape == "cosine":
        profile = jnp.sin(jnp.pi * phase) ** 2
    else:
        raise ValueError(f"unknown oscillation shape {shape!r}")
    effective_amplitude = jnp.where(step >= stop_step, 1.0, amplitude)
    return 1.0 + (effective_amplitude - 1.0) * profile


def emphasized_class(step, period, num_classes: int):
    """c(t) = floor(t / T) mod C, as an int32 scalar."""
    cycle, _ = oscillation_phase(step, period)
    return jnp.mod(cycle, num_classes).astype(jnp.int32)


def class_weights(step, num_classes: int, amplitude, period, stop_step, shape: str = "triangle"):
    """Gamma(t), shape (C,): C * raw / sum(raw), summing to C."""
    g = emphasis(step, amplitude, period, stop_step, shape)
    raw = jnp.where(jnp.arange(num_classes) == emphasized_class(step, period, num_classes), g, 1.0)
    return num_classes * raw / jnp.sum(raw)


def cross_entropy(logits, labels):
    """Softmax cross-entropy per example: logits (P, C), labels (P,) int -> (P,).
    Written with one-hot labels: dense operations that fuse, where an integer-label gather
    becomes a slow scatter in the gradient on CPU."""
    targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return jax.nn.logsumexp(logits, axis=-1) - jnp.sum(targets * logits, axis=-1)


def squared_error(logits, labels):
    """sum_i (f_i(x_j) - onehot(y_j)_i)^2 per example: (P, C), (P,) -> (P,)."""
    targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return jnp.sum((logits - targets) ** 2, axis=-1)


PER_EXAMPLE_LOSSES = {"dynamical_cross_entropy": cross_entropy, "dynamical_mse": squared_error}


def example_weights(labels, gamma):
    """Gamma[y_j] for every example, (P,), as a one-hot masked sum: it fuses with the loss, where
    a gather or a matrix product is a kernel call of its own on CPU."""
    return jnp.sum(jax.nn.one_hot(labels, gamma.shape[0], dtype=gamma.dtype) * gamma, axis=-1)


def dynamical_loss(name: str, logits, labels, gamma):
    """F = (1/P) sum_j Gamma[y_j] * l(logits_j, y_j), with l chosen by the loss `name`."""
    return jnp.mean(example_weights(labels, gamma) * PER_EXAMPLE_LOSSES[name](logits, labels))
