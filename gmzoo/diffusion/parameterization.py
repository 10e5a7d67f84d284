"""What a network predicts, and the adapters that let every sampler run every network.

For any Gaussian perturbation x_t = alpha_t x_0 + sigma_t eps, a network may predict

    eps     the noise,
    x0      the clean data,
    v       alpha_t eps - sigma_t x_0        (Salimans & Ho 2022),
    score   grad log q(x_t) ~ -eps / sigma_t (Song et al. 2021).

Each determines the others given (x_t, alpha_t, sigma_t):

    x_0 = (alpha x_t - sigma v) / (alpha^2 + sigma^2),   eps = (sigma x_t + alpha v) / (alpha^2 + sigma^2),
    eps = -sigma score,                                   x_0 = (x_t - sigma eps) / alpha.

Samplers take an ``eps_fn(x, t) -> eps`` (DDPM, DDIM) or a ``score_fn(x, t) -> score`` (SDE
solvers); :func:`eps_and_x0` and :func:`score` convert any network output into them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

PREDICTIONS = ("eps", "x0", "v", "score")


def _b(a: jax.Array, x: jax.Array) -> jax.Array:
    a = jnp.asarray(a, x.dtype)
    return jnp.reshape(a, a.shape + (1,) * (x.ndim - a.ndim))


def eps_and_x0(prediction: str, out: jax.Array, x_t: jax.Array, alpha: jax.Array,
               sigma: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(eps, x0)`` implied by a network output ``out [B, ...]`` at ``x_t`` with per-example
    ``alpha, sigma [B]``."""
    a, s = _b(alpha, x_t), _b(sigma, x_t)
    if prediction == "eps":
        return out, (x_t - s * out) / a
    if prediction == "x0":
        return (x_t - a * out) / s, out
    if prediction == "v":
        norm = a * a + s * s
        return (s * x_t + a * out) / norm, (a * x_t - s * out) / norm
    if prediction == "score":
        eps = -s * out
        return eps, (x_t - s * eps) / a
    raise ValueError(f"unknown prediction {prediction!r}; choose one of {', '.join(PREDICTIONS)}")


def target(prediction: str, x0: jax.Array, eps: jax.Array, alpha: jax.Array,
           sigma: jax.Array) -> jax.Array:
    """The regression target of a network that predicts ``prediction``."""
    a, s = _b(alpha, x0), _b(sigma, x0)
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        return a * eps - s * x0
    if prediction == "score":
        return -eps / s
    raise ValueError(f"unknown prediction {prediction!r}; choose one of {', '.join(PREDICTIONS)}")


def score(prediction: str, out: jax.Array, x_t: jax.Array, alpha: jax.Array,
          sigma: jax.Array) -> jax.Array:
    """grad_x log q_t(x_t) implied by a network output: -eps / sigma."""
    if prediction == "score":
        return out
    eps, _ = eps_and_x0(prediction, out, x_t, alpha, sigma)
    return -eps / _b(sigma, x_t)
