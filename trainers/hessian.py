"""Top eigenvalues of a Hessian by the Lanczos method, without ever forming the Hessian.

Hessian-vector products by forward-over-reverse differentiation:
    H v = d/de grad F(theta + e v) at e = 0  =  jax.jvp(jax.grad(F), (theta,), (v,))[1]
Lanczos with full reorthogonalization, `order` steps from a random unit vector v_1:
    w = H v_j - beta_{j-1} v_{j-1};   alpha_j = v_j . w;   w -= alpha_j v_j
    w -= V (V^T w), twice (V = [v_1 .. v_j]: keeps the basis orthogonal in finite precision)
    beta_j = |w|;   v_{j+1} = w / beta_j
The eigenvalues of the tridiagonal matrix T (alpha on the diagonal, beta beside it) approximate
H's extreme eigenvalues, the largest converging first; the top k are returned, largest first.
With order >= dim(theta) the Krylov space is the whole space and they are exact (up to rounding).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


def lanczos_tridiagonal(hvp, start, order: int):
    """(alphas (order,), betas (order - 1,)) of `order` Lanczos steps from `start` (dim,)."""
    dim = start.shape[0]
    basis = jnp.zeros((order + 1, dim), start.dtype).at[0].set(start / jnp.linalg.norm(start))
    alphas = jnp.zeros(order, start.dtype)
    betas = jnp.zeros(order, start.dtype)
    tiny = jnp.finfo(start.dtype).eps

    def step(j, carry):
        basis, alphas, betas = carry
        v = basis[j]
        w = hvp(v) - jnp.where(j > 0, betas[j - 1], 0.0) * basis[jnp.maximum(j - 1, 0)]
        alpha = jnp.dot(v, w)
        w = w - alpha * v
        done = (jnp.arange(order + 1) <= j)[:, None] * basis  # the basis so far, zeros beyond
        for _ in range(2):
            w = w - done.T @ (done @ w)
        beta = jnp.linalg.norm(w)
        next_v = jnp.where(beta > tiny, w / jnp.maximum(beta, tiny), jnp.zeros_like(w))
        return basis.at[j + 1].set(next_v), alphas.at[j].set(alpha), betas.at[j].set(beta)

    _, alphas, betas = jax.lax.fori_loop(0, order, step, (basis, alphas, betas))
    return alphas, betas[: order - 1]


def top_eigenvalues(hvp, start, order: int, k: int):
    """The k largest eigenvalues (descending) of the operator `hvp`, by `order` Lanczos steps."""
    alphas, betas = lanczos_tridiagonal(hvp, start, order)
    tridiagonal = jnp.diag(alphas) + jnp.diag(betas, 1) + jnp.diag(betas, -1)
    return jnp.linalg.eigvalsh(tridiagonal)[::-1][:k]


def hessian_top_eigenvalues(loss, params, key, order: int, k: int):
    """The k largest eigenvalues of the Hessian of loss(params) at `params` (any pytree)."""
    flat, unravel = ravel_pytree(params)
    gradient = jax.grad(lambda x: loss(unravel(x)))
    hvp = lambda v: jax.jvp(gradient, (flat,), (v,))[1]
    order = min(order, flat.shape[0])
    start = jax.random.normal(key, flat.shape, flat.dtype)
    return top_eigenvalues(hvp, start, order, k)
