"""Discrete-time noise schedules as data, and the closed forms of the DDPM forward process.

Index convention: ``t`` in ``0 .. T-1`` is the paper's step ``t + 1`` (Ho et al. 2020), so
``alphas_cumprod[t] = prod_{s <= t} (1 - beta_s)`` and the posterior at index ``t`` is
q(x_{t-1} | x_t, x_0) with ``alphas_cumprod_prev[0] = 1`` (x_{-1} is the data x_0 itself).

    q(x_t | x_0)            = N(sqrt(abar_t) x_0, (1 - abar_t) I)
    q(x_{t-1} | x_t, x_0)   = N(c0_t x_0 + c1_t x_t, beta~_t I),
        c0_t = beta_t sqrt(abar_{t-1}) / (1 - abar_t),
        c1_t = (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t),
        beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t).

A :class:`Schedule` is a pytree of arrays (pass it into compiled functions); it has no counter or
hidden state. The constants are computed in float64 and stored in float32.
"""

from __future__ import annotations

import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gmzoo.nn.tree import expand_like

SCHEDULES = ("linear", "cosine")


@flax.struct.dataclass
class Schedule:
    """All per-step constants of a discrete Gaussian diffusion, each ``[T]``."""

    betas: jax.Array
    alphas_cumprod: jax.Array
    alphas_cumprod_prev: jax.Array
    posterior_variance: jax.Array  # beta~_t (0 at t = 0)
    posterior_log_variance_clipped: jax.Array  # log beta~_t, with beta~_1 in place of beta~_0
    posterior_mean_coef_x0: jax.Array  # c0_t
    posterior_mean_coef_xt: jax.Array  # c1_t

    @property
    def num_steps(self) -> int:
        return int(self.betas.shape[0])

    @property
    def alphas(self) -> jax.Array:
        return 1.0 - self.betas


def from_betas(betas: ArrayLike) -> Schedule:
    """The schedule of any given ``betas [T]`` (each in (0, 1))."""
    b = np.asarray(betas, np.float64)
    if b.ndim != 1 or len(b) < 1 or not np.all((b > 0) & (b < 1)):
        raise ValueError(f"betas must be a 1-D array of values in (0, 1), got shape {b.shape}")
    abar = np.cumprod(1.0 - b)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    post_var = b * (1.0 - abar_prev) / (1.0 - abar)
    post_log_var = np.log(np.concatenate([[post_var[1] if len(b) > 1 else b[0]], post_var[1:]]))
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    return Schedule(
        betas=f32(b), alphas_cumprod=f32(abar), alphas_cumprod_prev=f32(abar_prev),
        posterior_variance=f32(post_var), posterior_log_variance_clipped=f32(post_log_var),
        posterior_mean_coef_x0=f32(b * np.sqrt(abar_prev) / (1.0 - abar)),
        posterior_mean_coef_xt=f32((1.0 - abar_prev) * np.sqrt(1.0 - b) / (1.0 - abar)))


def linear(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """Ho et al. (2020): betas linear from 1e-4 to 0.02 at T = 1000, rescaled by 1000 / T for
    other T (Nichol & Dhariwal 2021) so that abar_T stays near zero."""
    scale = 1000.0 / num_steps
    return from_betas(np.linspace(scale * beta_start, min(scale * beta_end, 0.999), num_steps))


def cosine(num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """Nichol & Dhariwal (2021): abar(t) = cos^2(((t / T + s) / (1 + s)) pi / 2) / abar(0),
    betas = 1 - abar_t / abar_{t-1}, clipped at ``max_beta``."""
    f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    betas = [min(1 - f((i + 1) / num_steps) / f(i / num_steps), max_beta) for i in range(num_steps)]
    return from_betas(betas)


def make(name: str, num_steps: int) -> Schedule:
    if name == "linear":
        return linear(num_steps)
    if name == "cosine":
        return cosine(num_steps)
    raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")


def coeffs(schedule: Schedule, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(alpha_t, sigma_t) = (sqrt(abar_t), sqrt(1 - abar_t))`` at integer steps ``t``: the
    generic x_t = alpha_t x_0 + sigma_t eps of every Gaussian diffusion."""
    abar = schedule.alphas_cumprod[t]
    return jnp.sqrt(abar), jnp.sqrt(1.0 - abar)


def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, eps: jax.Array) -> jax.Array:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (the reparameterised q(x_t | x_0))."""
    alpha, sigma = coeffs(schedule, t)
    return expand_like(alpha, x0) * x0 + expand_like(sigma, x0) * eps


def q_posterior(schedule: Schedule, x0: jax.Array, x_t: jax.Array,
                t: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Mean ``[B, ...]``, variance ``[B]`` and clipped log-variance ``[B]`` of
    q(x_{t-1} | x_t, x_0)."""
    mean = (expand_like(schedule.posterior_mean_coef_x0[t], x0) * x0
            + expand_like(schedule.posterior_mean_coef_xt[t], x_t) * x_t)
    return mean, schedule.posterior_variance[t], schedule.posterior_log_variance_clipped[t]
