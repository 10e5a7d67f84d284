"""Guidance as wrappers of the noise (or score) function, so every sampler can be guided.

Classifier-free guidance (Ho & Salimans 2021; the seeds' formula):

    eps_hat(x_t, c) = (1 + w) eps(x_t, c) - w eps(x_t, null)

Classifier guidance (Dhariwal & Nichol 2021): the seeds shift the ancestral mean,
mu' = mu + s Sigma grad log p_phi(c | x_t). In score form this is
score'(x_t) = score(x_t) + s grad log p_phi(c | x_t), i.e.

    eps_hat(x_t, c) = eps(x_t) - s sigma_t grad_x log p_phi(c | x_t),

which equals the mean shift with Sigma = beta_t / alpha_t^{1/2} ~ beta_t for a DDPM step (to first
order in beta_t) and also guides DDIM and the SDE solvers.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def classifier_free(eps_cond: Callable, eps_uncond: Callable, w: float) -> Callable:
    """``eps_fn(x, t)`` of classifier-free guidance with weight ``w`` (w = 0: conditional)."""

    def eps_fn(x: jax.Array, t: jax.Array) -> jax.Array:
        return (1.0 + w) * eps_cond(x, t) - w * eps_uncond(x, t)

    return eps_fn


def classifier_free_batched(apply: Callable, y: jax.Array, null_label: int, w: float) -> Callable:
    """Classifier-free guidance with one network call on ``[2B, ...]`` (conditional and null
    label stacked), the usual way to run it. ``apply(x, t, y) -> eps``."""

    def eps_fn(x: jax.Array, t: jax.Array) -> jax.Array:
        b = x.shape[0]
        both = apply(jnp.concatenate([x, x]), jnp.concatenate([t, t]),
                     jnp.concatenate([y, jnp.full_like(y, null_label)]))
        return (1.0 + w) * both[:b] - w * both[b:]

    return eps_fn


def classifier_gradient(log_prob_fn: Callable, y: jax.Array) -> Callable:
    """``(x, t) -> grad_x log p(y | x_t, t)`` for ``log_prob_fn(x, t) -> [B, K]`` log-probabilities
    (each example's log-probability depends only on its own x, so the gradient of the sum is
    the per-example gradient)."""

    def grad(x: jax.Array, t: jax.Array) -> jax.Array:
        return jax.grad(lambda x: jnp.sum(jnp.take_along_axis(log_prob_fn(x, t), y[:, None], 1)))(x)

    return grad


def classifier_guided(eps_fn: Callable, log_prob_fn: Callable, y: jax.Array, scale: float,
                      sigma_fn: Callable) -> Callable:
    """``eps_fn`` guided by ``scale * grad_x log p(y | x_t, t)``.

    ``log_prob_fn(x, t) -> log-probabilities [B, K]`` of a noise-conditional classifier;
    ``sigma_fn(t) -> sigma_t [B]`` the noise level at ``t``.
    """

    grad_log_p = classifier_gradient(log_prob_fn, y)

    def guided(x: jax.Array, t: jax.Array) -> jax.Array:
        sigma = sigma_fn(t).reshape((-1,) + (1,) * (x.ndim - 1))
        return eps_fn(x, t) - scale * sigma * grad_log_p(x, t)

    return guided


def score_classifier_guided(score_fn: Callable, log_prob_fn: Callable, y: jax.Array,
                            scale: float) -> Callable:
    """``score_fn(x, t) + scale * grad_x log p(y | x_t, t)`` for the SDE solvers."""

    grad_log_p = classifier_gradient(log_prob_fn, y)

    def guided(x: jax.Array, t: jax.Array) -> jax.Array:
        return score_fn(x, t) + scale * grad_log_p(x, t)

    return guided
