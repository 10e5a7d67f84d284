"""2-D toy distributions, sampled in JAX: each returns float32 [n, 2] (batch `{"x": ...}`).

The samplers are jitted with `n` (and `num_modes`) static: each is one compiled call.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp


def _check_n(n: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")


@functools.partial(jax.jit, static_argnames=("n",))
def moons(key: jax.Array, n: int, noise: float = 0.05) -> jax.Array:
    """Two interleaved half circles (scikit-learn `make_moons` geometry), plus N(0, noise^2).

    Upper moon (cos t, sin t), lower moon (1 - cos t, 0.5 - sin t), t ~ U[0, pi]; the first
    n // 2 points are on the upper moon. Values lie in about [-1, 2] x [-0.5, 1].
    """
    _check_n(n)
    key_t, key_noise = jax.random.split(key)
    t = jax.random.uniform(key_t, (n,), minval=0.0, maxval=math.pi)  # [n]
    upper = jnp.arange(n) < n // 2  # [n]
    x = jnp.where(upper, jnp.cos(t), 1.0 - jnp.cos(t))
    y = jnp.where(upper, jnp.sin(t), 0.5 - jnp.sin(t))
    points = jnp.stack([x, y], axis=-1)  # [n, 2]
    return (points + noise * jax.random.normal(key_noise, (n, 2))).astype(jnp.float32)


def ring_centres(num_modes: int = 8, radius: float = 2.0) -> jax.Array:
    """Mode centres radius * (cos 2 pi k / M, sin 2 pi k / M), k = 0..M-1: float32 [M, 2]."""
    if num_modes < 1:
        raise ValueError(f"num_modes must be >= 1, got {num_modes}")
    angles = 2.0 * math.pi * jnp.arange(num_modes) / num_modes  # [M]
    return radius * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1).astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("n", "num_modes"))
def ring_of_gaussians(
    key: jax.Array, n: int, num_modes: int = 8, radius: float = 2.0, std: float = 0.05
) -> jax.Array:
    """Equal mixture of M isotropic Gaussians N(c_k, std^2 I) at `ring_centres(M, radius)`."""
    _check_n(n)
    key_mode, key_noise = jax.random.split(key)
    modes = jax.random.randint(key_mode, (n,), 0, num_modes)  # [n]
    centres = ring_centres(num_modes, radius)[modes]  # [n, 2]
    return (centres + std * jax.random.normal(key_noise, (n, 2))).astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("n",))
def swiss_roll(key: jax.Array, n: int, noise: float = 0.05) -> jax.Array:
    """2-D swiss roll (t cos t, t sin t) / 5, t ~ U[1.5 pi, 4.5 pi], plus N(0, noise^2).

    The (x, z) plane of scikit-learn's `make_swiss_roll`, scaled by 1/5 into about [-3, 3]^2.
    """
    _check_n(n)
    key_t, key_noise = jax.random.split(key)
    t = 1.5 * math.pi * (1.0 + 2.0 * jax.random.uniform(key_t, (n,)))  # [n]
    points = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=-1) / 5.0  # [n, 2]
    return (points + noise * jax.random.normal(key_noise, (n, 2))).astype(jnp.float32)
