"""Image augmentation inside the compiled step: random horizontal flip and random crop.

Each image (H, W, C) is flipped left-right with probability 1/2, zero-padded by `pad` pixels on
every side and cropped back to (H, W) at a uniformly random offset. Deterministic in `key`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def flip_and_crop(key, images, pad: int = 4):
    """images (N, H, W, C) -> (N, H, W, C)."""
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
