"""Diagonal Gaussian identities used by the VAE family (notes 001/002, "VAE Objective").

Latent Gaussians are given by `(mean, log_var)`, each `[..., Z]`; every function sums over the
last (latent) axis and returns one number per leading index.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_kl(mean: ArrayLike, log_var: ArrayLike) -> jax.Array:
    """KL(N(mean, diag exp(log_var)) || N(0, I)) = 1/2 sum(exp(log_var) + mean^2 - 1 - log_var).

    Closed form, notes 002 eq. (*): 1/2 (tr Sigma + mu^T mu - D_z - log det Sigma). `[..., Z] -> [...]`.
    """
    mean, log_var = jnp.asarray(mean), jnp.asarray(log_var)
    return 0.5 * jnp.sum(jnp.exp(log_var) + jnp.square(mean) - 1.0 - log_var, axis=-1)


def gaussian_kl_two(
    mean_q: ArrayLike, log_var_q: ArrayLike, mean_p: ArrayLike, log_var_p: ArrayLike
) -> jax.Array:
    """KL(N(mean_q, diag var_q) || N(mean_p, diag var_p)), closed form (notes 001):

    1/2 sum(log var_p - log var_q + (var_q + (mean_q - mean_p)^2) / var_p - 1). `[..., Z] -> [...]`.
    """
    mean_q, log_var_q = jnp.asarray(mean_q), jnp.asarray(log_var_q)
    mean_p, log_var_p = jnp.asarray(mean_p), jnp.asarray(log_var_p)
    ratio = (jnp.exp(log_var_q) + jnp.square(mean_q - mean_p)) * jnp.exp(-log_var_p)
    return 0.5 * jnp.sum(log_var_p - log_var_q + ratio - 1.0, axis=-1)


def diag_gaussian_log_prob(z: ArrayLike, mean: ArrayLike, log_var: ArrayLike) -> jax.Array:
    """log N(z; mean, diag exp(log_var)) = -1/2 sum(log 2pi + log_var + (z - mean)^2 / var).

    `[..., Z] -> [...]`.
    """
    z, mean, log_var = jnp.asarray(z), jnp.asarray(mean), jnp.asarray(log_var)
    return -0.5 * jnp.sum(_LOG_2PI + log_var + jnp.square(z - mean) * jnp.exp(-log_var), axis=-1)


def standard_normal_log_prob(z: ArrayLike) -> jax.Array:
    """log N(z; 0, I) = -1/2 sum(log 2pi + z^2). `[..., Z] -> [...]`."""
    z = jnp.asarray(z)
    return -0.5 * jnp.sum(_LOG_2PI + jnp.square(z), axis=-1)


def reparameterize(key: jax.Array, mean: ArrayLike, log_var: ArrayLike) -> jax.Array:
    """z = mean + exp(log_var / 2) * eps, eps ~ N(0, I) of the broadcast shape (notes 002,
    reparameterization trick)."""
    mean, log_var = jnp.asarray(mean), jnp.asarray(log_var)
    eps = jax.random.normal(key, jnp.broadcast_shapes(mean.shape, log_var.shape), mean.dtype)
    return mean + jnp.exp(0.5 * log_var) * eps
