"""Pure pixel transforms (jax.numpy, usable inside jit), and the bits/dim convention.

Images arrive as integer levels k in {0, ..., L-1} (L = `num_levels`: 17 for digits, 256 for
MNIST-like sets), stored as uint8 or as float32 level values.

Bits/dim: for a discrete model over L levels, the negative log-likelihood of one image in nats
divided by (D ln 2), D = H*W*C, is its bits/dim. The uniform model gives log2(L) bits/dim: 4.09
for the 17-level digits, 8 for 256-level MNIST; for binarized data L = 2 (at most 1 bit/dim).
A continuous density on dequantized data x = (k + u)/L, u ~ U[0, 1)^D, bounds the discrete NLL:
-log P(k) <= E_u[-log p(x)] + D ln L  (Theis et al. 2016): add D ln L nats before converting.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def _check_levels(num_levels: int) -> None:
    if not isinstance(num_levels, int) or num_levels < 2:
        raise ValueError(f"num_levels must be an int >= 2, got {num_levels!r}")


def to_unit(x: ArrayLike, num_levels: int) -> jax.Array:
    """Level k -> k / (L - 1) in [0, 1], float32."""
    _check_levels(num_levels)
    return jnp.asarray(x, jnp.float32) / (num_levels - 1)


def to_symmetric(x: ArrayLike, num_levels: int) -> jax.Array:
    """Level k -> 2 k / (L - 1) - 1 in [-1, 1], float32."""
    return 2.0 * to_unit(x, num_levels) - 1.0


def binarize_fixed(x01: ArrayLike, threshold: float = 0.5) -> jax.Array:
    """x in [0, 1] -> 1.0 where x > threshold else 0.0 (the same every epoch), float32."""
    return (jnp.asarray(x01) > threshold).astype(jnp.float32)


def binarize_dynamic(key: jax.Array, x01: ArrayLike) -> jax.Array:
    """One draw b ~ Bernoulli(x) per pixel, x in [0, 1] (Salakhutdinov & Murray 2008), float32."""
    x01 = jnp.asarray(x01, jnp.float32)
    return jax.random.bernoulli(key, x01).astype(jnp.float32)


def dequantize_uniform(key: jax.Array, x: ArrayLike, num_levels: int) -> jax.Array:
    """Level k -> (k + u) / L with u ~ U[0, 1), so values lie in [0, 1), float32."""
    _check_levels(num_levels)
    x = jnp.asarray(x, jnp.float32)
    u = jax.random.uniform(key, x.shape, jnp.float32)
    return (x + u) / num_levels


def bits_per_dim(nll_nats: ArrayLike, num_dims: int) -> jax.Array:
    """bits/dim = NLL (nats per image) / (D ln 2), D = `num_dims` (H*W*C)."""
    if num_dims < 1:
        raise ValueError(f"num_dims must be >= 1, got {num_dims}")
    return jnp.asarray(nll_nats, jnp.float32) / (num_dims * math.log(2.0))
