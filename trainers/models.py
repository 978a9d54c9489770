"""Flax models. Each maps inputs (N, ...) to logits (N, num_classes).

- MLP: `depth` hidden Dense layers of `width` units with ReLU (the paper's spiral network is one
  hidden layer). Its parameters and their names are nn.Dense's, initialized as nn.Dense's (or
  with glorot_normal kernels, or as the published notebook's stax network: `stax_params`). Its
  `layout` is how it computes, never what: `feature_major` (activations (features, N)), which
  XLA's CPU matmuls run up to 2x faster for small MLPs (benchmarks/mlp_layout.py); `batch_major`
  (nn.Dense's own, activations (N, features)); or `elementwise`, batch-major with every product
  a broadcast multiply summed over its inner axis (loop fusions instead of many tiny matrix
  kernels in a vmapped block: a candidate for GPUs, benchmarks/accelerator.py).
- Myrtle5 (Shankar et al. 2020): conv3x3-ReLU twice, avg-pool; conv-ReLU, avg-pool; conv-ReLU,
  avg-pool three times; dense. All convolutions have `channels` channels.
- WideResNet (Zagoruyko & Komodakis 2016): WRN-depth-k with pre-activation basic blocks and batch
  norm; (depth - 4) / 6 blocks in each of three groups of 16k, 32k and 64k channels.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tiltsweep.trainers.config import MLP_LAYOUTS, MLPModel, Myrtle5Model, WideResNetModel


KERNEL_INITS = {"lecun_normal": nn.initializers.lecun_normal(), "glorot_normal": nn.initializers.glorot_normal()}


class Precision:
    """Of a model with `dtype` (its arithmetic) and `param_dtype` (its parameters', None: dtype):
    mixed precision computes in bfloat16 with float32 parameters."""

    @property
    def parameters_dtype(self):
        return self.param_dtype or self.dtype


class DenseParameters(Precision, nn.Module):
    """A layer with nn.Dense's parameters (names, shapes, initialization) that computes otherwise,
    in `dtype`, its parameters kept in `param_dtype`."""

    features: int
    dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()
    param_dtype: Any = None  # default: dtype

    def parameters_for(self, h, inputs: int) -> tuple:
        """(h, kernel (inputs, features), bias (features,)), all in `dtype`."""
        kernel = self.param("kernel", self.kernel_init, (inputs, self.features), self.parameters_dtype)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), self.parameters_dtype)
        return nn.dtypes.promote_dtype(h, kernel, bias, dtype=self.dtype)


class FeatureMajorDense(DenseParameters):
    """nn.Dense on activations laid out feature-major: h (in, N) -> kernel^T h + bias[:, None], (features, N)."""

    @nn.compact
    def __call__(self, h):
        h, kernel, bias = self.parameters_for(h, h.shape[0])
        return jax.lax.dot_general(kernel, h, (((0,), (0,)), ((), ()))) + bias[:, None]


class ElementwiseDense(DenseParameters):
    """nn.Dense with each output computed as sum_i h[..., i, None] * kernel[i, :] + bias: a
    broadcast multiply and a sum over the (small) input axis, which XLA fuses with what surrounds
    it rather than calling a matrix kernel. The products and their sum are at least float32, as
    a matrix unit's are (in bfloat16, rounding each product would lose more than a product of
    matrices does). A layer makes (..., inputs, features) products: for narrow MLPs only."""

    @nn.compact
    def __call__(self, h):
        h, kernel, bias = self.parameters_for(h, h.shape[-1])
        wide = jnp.promote_types(self.dtype, jnp.float32)
        return (h.astype(wide)[..., :, None] * kernel.astype(wide)).sum(-2).astype(self.dtype) + bias


class MLP(Precision, nn.Module):
    width: int
    depth: int
    num_classes: int
    dtype: Any = jnp.float32
    layout: str = "feature_major"  # how it computes, not what: the same function of the same parameters (MLP_LAYOUTS)
    initializer: str = "lecun_normal"  # of the kernels (biases start at zero); `stax` starts from stax_params instead
    param_dtype: Any = None  # the parameters' (default: dtype, the arithmetic's)

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape((x.shape[0], -1))
        # stax's parameters replace these after init (stax_params): any kernel init stands in
        kernel_init = KERNEL_INITS["lecun_normal" if self.initializer == "stax" else self.initializer]
        if self.layout not in MLP_LAYOUTS:
            raise ValueError(f"unknown MLP layout {self.layout!r} (one of {', '.join(MLP_LAYOUTS)})")
        if self.layout != "feature_major":
            layer = nn.Dense if self.layout == "batch_major" else ElementwiseDense
            dense = lambda features, i: layer(features, dtype=self.dtype, param_dtype=self.parameters_dtype, kernel_init=kernel_init,
                                              name=f"Dense_{i}")
            for i in range(self.depth):
                x = nn.relu(dense(self.width, i)(x))
            return dense(self.num_classes, self.depth)(x)
        # Materialized, so that XLA does not fold the transpose into the first matmul as a
        # transposed operand, which its CPU backend hands to a much slower kernel.
        h = jax.lax.optimization_barrier(x.T)
        for i in range(self.depth):
            h = nn.relu(FeatureMajorDense(self.width, self.dtype, kernel_init, self.parameters_dtype, name=f"Dense_{i}")(h))
        return FeatureMajorDense(self.num_classes, self.dtype, kernel_init, self.parameters_dtype, name=f"Dense_{self.depth}")(h).T


def stax_params(key, depth: int, width: int, input_dim: int, num_classes: int, dtype) -> dict:
    """The published notebook's start, in MLP's parameter names: what
    `stax.serial(Dense(width), Relu, ..., Dense(num_classes))` (depth hidden layers) draws from
    `key`, i.e. PRNGKey(seed): each layer gets the next split of the key, a Dense layer's kernel
    glorot_normal and its bias normal with std 0.01. Drawn in JAX's default float type (float64
    with x64 enabled, as the notebook ran), then cast to `dtype`."""
    from jax.example_libraries import stax

    layers = [layer for _ in range(depth) for layer in (stax.Dense(width), stax.Relu)] + [stax.Dense(num_classes)]
    _, params = stax.serial(*layers)[0](key, (-1, input_dim))
    dense = [layer for layer in params if layer]  # Relu has no parameters
    return {f"Dense_{i}": {"kernel": kernel.astype(dtype), "bias": bias.astype(dtype)} for i, (kernel, bias) in enumerate(dense)}


class Myrtle5(Precision, nn.Module):
    channels: int
    num_classes: int
    dtype: Any = jnp.float32
    param_dtype: Any = None  # default: dtype

    @nn.compact
    def __call__(self, x, train: bool = False):
        def conv_relu(y):
            return nn.relu(nn.Conv(self.channels, (3, 3), dtype=self.dtype, param_dtype=self.parameters_dtype)(y))

        def pool(y):
            return nn.avg_pool(y, (2, 2), strides=(2, 2))

        x = pool(conv_relu(conv_relu(x)))
        x = pool(conv_relu(x))
        x = pool(pool(pool(conv_relu(x))))
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.parameters_dtype)(x)


class WideBasicBlock(Precision, nn.Module):
    channels: int
    stride: int
    dtype: Any = jnp.float32
    param_dtype: Any = None  # default: dtype

    @nn.compact
    def __call__(self, x, train: bool):
        norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype, param_dtype=self.parameters_dtype)
        conv = lambda stride: nn.Conv(
            self.channels, (3, 3), strides=(stride, stride), use_bias=False, dtype=self.dtype, param_dtype=self.parameters_dtype
        )
        activated = nn.relu(norm()(x))
        shortcut = x
        if x.shape[-1] != self.channels or self.stride != 1:
            shortcut = nn.Conv(
                self.channels, (1, 1), strides=(self.stride, self.stride), use_bias=False,
                dtype=self.dtype, param_dtype=self.parameters_dtype,
            )(activated)
        y = conv(self.stride)(activated)
        y = conv(1)(nn.relu(norm()(y)))
        return y + shortcut


class WideResNet(Precision, nn.Module):
    depth: int
    widen_factor: int
    num_classes: int
    dtype: Any = jnp.float32
    param_dtype: Any = None  # default: dtype

    @nn.compact
    def __call__(self, x, train: bool = False):
        blocks_per_group = (self.depth - 4) // 6
        x = nn.Conv(16, (3, 3), use_bias=False, dtype=self.dtype, param_dtype=self.parameters_dtype)(x)
        for group, base in enumerate((16, 32, 64)):
            for block in range(blocks_per_group):
                stride = 2 if group > 0 and block == 0 else 1
                x = WideBasicBlock(base * self.widen_factor, stride, self.dtype, self.parameters_dtype)(x, train)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype, param_dtype=self.parameters_dtype)(x))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.parameters_dtype)(x)


def mlp_layout(cfg: MLPModel, dtype) -> str:
    """The MLP's layout: the config's, or with `auto` the rule measured. On a CPU, feature-major
    is faster for every float32 MLP measured; in float64 only without hidden-to-hidden layers
    (benchmarks/README.md, "MLP layout"). On accelerators the same rule holds for want of a
    better measurement: feature-major is the layout issue 30 measured on an H200 (2.1 M
    point-steps/s at 4c1a266; the others are not measured there yet). benchmarks/accelerator.py
    trains a block in each layout on whatever device JAX sees; its result is for this rule to follow."""
    if cfg.layout != "auto":
        return cfg.layout
    return "feature_major" if jnp.dtype(dtype) != jnp.float64 or cfg.depth < 2 else "batch_major"


def build_model(cfg, num_classes: int, dtype=jnp.float32, param_dtype=None) -> nn.Module:
    """The model of a config, computing in `dtype` with its parameters in `param_dtype` (default:
    `dtype`; float32 under bfloat16's mixed precision)."""
    if isinstance(cfg, MLPModel):
        return MLP(cfg.width, cfg.depth, num_classes, dtype, mlp_layout(cfg, dtype), cfg.init, param_dtype)
    if isinstance(cfg, Myrtle5Model):
        return Myrtle5(cfg.channels, num_classes, dtype, param_dtype)
    if isinstance(cfg, WideResNetModel):
        return WideResNet(cfg.depth, cfg.widen_factor, num_classes, dtype, param_dtype)
    raise ValueError(f"unknown model {cfg!r}")
