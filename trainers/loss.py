"""The dynamical loss of Ruiz-Garcia et al. (ICML 2021), exactly as DESIGN.md defines it.

Classes i = 0..C-1, optimizer step t, period T (steps), amplitude A >= 1, the class weights
Gamma_i(t) of trainers.oscillation (the triangle or cosine emphasis of class floor(t / T) mod C):

    F(t) = (1/P) sum_j Gamma_{y_j}(t) * l(f(x_j), y_j)

with l the softmax cross-entropy (`dynamical_cross_entropy`) or the squared error against the
one-hot target, summed over classes (`dynamical_mse`). From `stop_step` on, A is 1, and with
A = 1 every Gamma_i is 1: F is then the plain loss.

All functions are pure and jittable; A, T and stop_step may be traced values.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from tiltsweep.trainers import oscillation


def emphasized_class(step, period, num_classes: int):
    """c(t) = floor(t / T) mod C, as an int32 scalar (trainers.oscillation, in JAX)."""
    return oscillation.emphasized_class(step, period, num_classes, xp=jnp)


def class_weights(step, num_classes: int, amplitude, period, stop_step, shape: str = "triangle"):
    """Gamma(t), shape (C,): C * raw / sum(raw), summing to C (trainers.oscillation, in JAX)."""
    return oscillation.class_weights(step, num_classes, amplitude, period, stop_step, shape, xp=jnp)


def cross_entropy(logits, labels):
    """Softmax cross-entropy per example, logsumexp_i f_i(x_j) - f_{y_j}(x_j): logits (P, C),
    labels (P,) int -> (P,); optax.softmax_cross_entropy_with_integer_labels. Its gradient
    scatters into the label entries; on CPU that costs what a one-hot product does (the spiral's
    training step: within 1%)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def squared_error(logits, labels):
    """sum_i (f_i(x_j) - onehot(y_j)_i)^2 per example: (P, C), (P,) -> (P,); optax.squared_error
    summed over the classes."""
    targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return jnp.sum(optax.squared_error(logits, targets), axis=-1)


PER_EXAMPLE_LOSSES = {"dynamical_cross_entropy": cross_entropy, "dynamical_mse": squared_error}


def example_weights(labels, gamma):
    """Gamma[y_j] for every example, (P,), as a one-hot masked sum: it fuses with the loss, where
    a gather or a matrix product is a kernel call of its own on CPU."""
    return jnp.sum(jax.nn.one_hot(labels, gamma.shape[0], dtype=gamma.dtype) * gamma, axis=-1)


def dynamical_loss(name: str, logits, labels, gamma):
    """F = (1/P) sum_j Gamma[y_j] * l(logits_j, y_j), with l chosen by the loss `name`."""
    return jnp.mean(example_weights(labels, gamma) * PER_EXAMPLE_LOSSES[name](logits, labels))
