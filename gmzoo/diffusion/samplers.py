"""Discrete-time samplers: DDPM ancestral sampling and DDIM, each one ``lax.scan``.

Both take ``eps_fn(x [B, ...], t [B] int32) -> eps [B, ...]`` (any network through the adapters
of :mod:`gmzoo.diffusion.parameterization`, guided or not: see :mod:`gmzoo.diffusion.guidance`),
a key, the starting noise ``x_T`` and a :class:`~gmzoo.diffusion.schedules.Schedule`. The steps
are the scan's inputs (step index and a per-step key), so nothing here counts steps by hand.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gmzoo.diffusion.schedules import Schedule, q_posterior
from gmzoo.nn.tree import expand_like

EpsFn = Callable[[jax.Array, jax.Array], jax.Array]
VARIANCES = ("posterior", "beta")


def _x0_from_eps(schedule: Schedule, x: jax.Array, t: jax.Array, eps: jax.Array,
                 clip: tuple[float, float] | None) -> jax.Array:
    abar = expand_like(schedule.alphas_cumprod[t], x)
    x0 = (x - jnp.sqrt(1.0 - abar) * eps) / jnp.sqrt(abar)
    return x0 if clip is None else jnp.clip(x0, *clip)


def ddpm_step(eps_fn: EpsFn, schedule: Schedule, x: jax.Array, t: jax.Array, key: jax.Array, *,
              clip: tuple[float, float] | None = None, variance: str = "posterior") -> jax.Array:
    """One ancestral step x_t -> x_{t-1} ~ p(x_{t-1} | x_t) at the integer step ``t`` (scalar).

    Without clipping the mean is the seeds' formula
    mu = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t), written as the posterior mean
    of q(x_{t-1} | x_t, x0_hat) (equal; it lets x0_hat be clipped to the data range). The
    variance is beta~_t (``"posterior"``) or beta_t (``"beta"``); no noise is added at t = 0.
    """
    tb = jnp.full((x.shape[0],), t, jnp.int32)
    eps = eps_fn(x, tb)
    x0 = _x0_from_eps(schedule, x, tb, eps, clip)
    mean, var, _ = q_posterior(schedule, x0, x, tb)
    if variance == "beta":
        var = schedule.betas[tb]
    noise = jax.random.normal(key, x.shape, x.dtype)
    return mean + jnp.where(t > 0, 1.0, 0.0) * expand_like(jnp.sqrt(var), x) * noise


def ddpm_ancestral(eps_fn: EpsFn, key: jax.Array, x_T: jax.Array, schedule: Schedule, *,
                   clip: tuple[float, float] | None = None, variance: str = "posterior",
                   return_trajectory: bool = False):
    """Ho et al. (2020), Algorithm 2: x_T ~ N(0, I), then T ancestral steps (one ``lax.scan``).

    Returns x_0 ``[B, ...]`` (and the trajectory ``[T, B, ...]`` of x_{t-1} with
    ``return_trajectory``)."""
    if variance not in VARIANCES:
        raise ValueError(f"variance={variance!r}; choose one of {', '.join(VARIANCES)}")
    T = schedule.num_steps
    steps = (jnp.arange(T - 1, -1, -1, dtype=jnp.int32), jax.random.split(key, T))

    def body(x, inputs):
        t, k = inputs
        x = ddpm_step(eps_fn, schedule, x, t, k, clip=clip, variance=variance)
        return x, (x if return_trajectory else None)

    x0, traj = jax.lax.scan(body, x_T, steps)
    return (x0, traj) if return_trajectory else x0


def ddim_timesteps(num_train_steps: int, num_steps: int) -> np.ndarray:
    """``num_steps`` integer steps from ``T - 1`` down to 0, evenly spaced (the "linear"
    sub-sequence of Song et al. 2021 with t_1 = 0, so the last step lands on the data)."""
    if not 1 <= num_steps <= num_train_steps:
        raise ValueError(f"num_steps={num_steps}: must be between 1 and the model's "
                         f"{num_train_steps} training steps")
    ts = np.round(np.linspace(num_train_steps - 1, 0, num_steps)).astype(np.int32)
    return ts if num_steps > 1 else np.array([num_train_steps - 1], np.int32)


def ddim(eps_fn: EpsFn, key: jax.Array, x_T: jax.Array, schedule: Schedule, *, num_steps: int,
         eta: float = 0.0, clip: tuple[float, float] | None = None,
         return_trajectory: bool = False):
    """Song, Meng & Ermon (2021), eq. 12, on a sub-sequence of ``num_steps`` steps:

        x_{s} = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z,
        sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s),

    where s is the next (smaller) step, abar_s = 1 after the last one. ``eta = 0`` is the
    deterministic DDIM; ``eta = 1`` with all T steps is DDPM with the posterior variance.
    """
    ts = ddim_timesteps(schedule.num_steps, num_steps)
    abar_all = schedule.alphas_cumprod
    t_cur = jnp.asarray(ts)
    abar_next = jnp.concatenate([abar_all[t_cur[1:]], jnp.ones((1,), abar_all.dtype)])
    inputs = (t_cur, abar_next, jax.random.split(key, len(ts)))

    def body(x, inp):
        t, a_s, k = inp
        tb = jnp.full((x.shape[0],), t, jnp.int32)
        eps = eps_fn(x, tb)
        a_t = abar_all[t]
        x0 = _x0_from_eps(schedule, x, tb, eps, clip)
        if clip is not None:  # the noise direction consistent with the clipped x0
            eps = (x - jnp.sqrt(a_t) * x0) / jnp.sqrt(1.0 - a_t)
        sigma = eta * jnp.sqrt((1.0 - a_s) / (1.0 - a_t)) * jnp.sqrt(jnp.maximum(1.0 - a_t / a_s, 0.0))
        direction = jnp.sqrt(jnp.maximum(1.0 - a_s - sigma ** 2, 0.0)) * eps
        x = jnp.sqrt(a_s) * x0 + direction + sigma * jax.random.normal(k, x.shape, x.dtype)
        return x, (x if return_trajectory else None)

    x0, traj = jax.lax.scan(body, x_T, inputs)
    return (x0, traj) if return_trajectory else x0
