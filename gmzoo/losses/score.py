"""Continuous-time denoising score matching (Song et al. 2021, eq. 7).

    L(theta) = E_t E_{x_0} E_{x_t|x_0} [lambda(t) || s_theta(x_t, t) - grad log p_0t(x_t|x_0) ||^2],

t ~ U(eps, T), x_t = alpha(t) x_0 + sigma(t) z, grad log p_0t(x_t | x_0) = -z / sigma(t), with the
SDEs of :mod:`gmzoo.diffusion.sde`. Two weightings:

    lambda(t) = sigma(t)^2:  per-example || sigma s + z ||^2, for an eps-predicting network
                             || z - eps_theta ||^2 (DDPM's L_simple in continuous time);
    lambda(t) = g(t)^2:      "likelihood weighting" (Song, Durkan, Murray & Ermon 2021, Theorem 1:
                             then L + const bounds the negative log-likelihood of the SDE model).

`apply_fn(params, x_t [B, ...], c [B], y [B] | None) -> out [B, ...]` is the network with the
noise-conditioning value c = 999 t; `prediction` (eps, x0, v or score) says what `out` is, and
:func:`gmzoo.diffusion.parameterization.score` turns it into s_theta.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from gmzoo.diffusion.parameterization import PREDICTIONS, score
from gmzoo.diffusion.sde import SDE

Metrics = dict[str, jax.Array]
TIME_SCALE = 999.0  # noise-conditioning value fed to the network: c = 999 t


def dsm_loss(params, batch: dict[str, jax.Array], key: jax.Array, *, apply_fn: Callable, sde: SDE,
             likelihood_weighting: bool = False, eps: float = 1e-5, prediction: str = "eps",
             reduce_mean: bool = False) -> tuple[jax.Array, Metrics]:
    """Denoising score matching loss, mean over the batch of the per-example

        || sigma(t) s_theta(x_t, t) + z ||^2                    (lambda = sigma^2), or
        g(t)^2 || s_theta(x_t, t) + z / sigma(t) ||^2           (likelihood_weighting),

    summed over data dimensions (averaged with `reduce_mean`). `batch["image"]` is x_0 `[B, ...]`,
    `batch.get("label")` the optional class `[B]`. Metrics: {"dsm": the loss}.
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction={prediction!r}; choose one of {', '.join(PREDICTIONS)}")
    if not 0.0 <= eps < sde.T:
        raise ValueError(f"eps must lie in [0, T={sde.T}), got {eps}")
    x0 = batch["image"]  # [B, ...]
    batch_size = x0.shape[0]
    key_t, key_z = jax.random.split(key)
    t = jax.random.uniform(key_t, (batch_size,), x0.dtype, minval=eps, maxval=sde.T)  # [B]
    z = jax.random.normal(key_z, x0.shape, x0.dtype)
    alpha, sigma = sde.marginal_coeffs(t)  # [B] each
    mean, _ = sde.marginal(x0, t)
    sigma_b = sigma.reshape((batch_size,) + (1,) * (x0.ndim - 1))
    x_t = mean + sigma_b * z
    out = apply_fn(params, x_t, TIME_SCALE * t, batch.get("label"))
    s = score(prediction, out, x_t, alpha, sigma)  # s_theta(x_t, t), [B, ...]
    if likelihood_weighting:
        g2 = jnp.square(sde.sde(jnp.zeros_like(x0), t)[1])  # [B]
        residual = s + z / sigma_b
    else:
        g2 = jnp.ones_like(t)
        residual = sigma_b * s + z
    reduce = jnp.mean if reduce_mean else jnp.sum
    per_example = g2 * reduce(jnp.square(residual).reshape(batch_size, -1), axis=-1)  # [B]
    loss = jnp.mean(per_example)
    return loss, {"dsm": loss}
