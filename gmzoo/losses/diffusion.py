"""Objectives of discrete-time diffusion models (Ho et al. 2020; Nichol & Dhariwal 2021).

Networks are called as ``apply_fn(params, x_t [B, ...], t [B] float, y [B] int | None,
cond [B, ...] | None) -> [B, ...]`` (``t`` is the integer step as a float, the noise-conditioning
value of :mod:`gmzoo.nn.unet`). A batch holds ``image`` (x_0 in [-1, 1]) and optionally ``label``
and ``cond`` (an image the network is conditioned on, e.g. the upsampled low-resolution image of
a cascade).

- :func:`simple_loss`: L_simple = E ||target - net(x_t, t)||^2 for an eps, x0 or v network, with
  label dropout for classifier-free guidance.
- :func:`vlb`: the full variational bound L = L_T + sum_{t>1} L_{t-1} + L_0 in nats per example
  (exact sum over all T steps, or a stratified Monte Carlo estimate over K of them).
- :func:`noisy_classifier_loss`: cross-entropy of a classifier of noisy x_t (classifier guidance).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from gmzoo.diffusion import parameterization as param
from gmzoo.diffusion.schedules import Schedule, coeffs, q_posterior, q_sample
from gmzoo.losses.gaussian import gaussian_kl_two
from gmzoo.losses.likelihoods import discretized_gaussian_log_prob

ApplyFn = Callable[..., jax.Array]


def drop_labels(key: jax.Array, y: jax.Array, rate: float, null_label: int) -> jax.Array:
    """Replaces each label by ``null_label`` with probability ``rate`` (classifier-free
    guidance trains one network for p(x | y) and p(x))."""
    return jnp.where(jax.random.uniform(key, y.shape) < rate, null_label, y)


def simple_loss(params: Any, batch: dict, key: jax.Array, *, apply_fn: ApplyFn,
                schedule: Schedule, prediction: str = "eps", num_classes: int = 0,
                label_dropout: float = 0.0) -> tuple[jax.Array, dict]:
    """L_simple = E_{x0, eps, t} ||target - net(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t)||^2
    (the seeds' training objective), averaged over pixels; the target is eps, x0 or v.

    With ``num_classes > 0`` the network sees ``batch["label"]``, replaced by the null label
    ``num_classes`` with probability ``label_dropout``.
    """
    x0 = batch["image"]
    t_key, eps_key, drop_key = jax.random.split(key, 3)
    t = jax.random.randint(t_key, (x0.shape[0],), 0, schedule.num_steps)
    eps = jax.random.normal(eps_key, x0.shape, x0.dtype)
    x_t = q_sample(schedule, x0, t, eps)
    y = None
    if num_classes:
        y = drop_labels(drop_key, batch["label"], label_dropout, num_classes)
    out = apply_fn(params, x_t, t.astype(jnp.float32), y, batch.get("cond"))
    alpha, sigma = coeffs(schedule, t)
    err = jnp.square(out - param.target(prediction, x0, eps, alpha, sigma))
    mse = jnp.mean(err.reshape(err.shape[0], -1), axis=-1)  # [B]
    loss = jnp.mean(mse)
    return loss, {"mse": loss}


def model_log_variance(schedule: Schedule, t: jax.Array, variance: str) -> jax.Array:
    """log of the fixed reverse variance: beta~_t (``"posterior"``, clipped at t = 0) or beta_t
    (``"beta"``, with beta~_1 at t = 0 as in Ho et al.'s code)."""
    if variance == "posterior":
        return schedule.posterior_log_variance_clipped[t]
    log_beta = jnp.log(schedule.betas).at[0].set(schedule.posterior_log_variance_clipped[0])
    return log_beta[t]


def vlb_term(params: Any, x0: jax.Array, t: jax.Array, key: jax.Array, *, apply_fn: ApplyFn,
             schedule: Schedule, prediction: str, num_levels: int, variance: str = "posterior",
             y: jax.Array | None = None, cond: jax.Array | None = None) -> jax.Array:
    """L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) for t > 0 and the decoder term
    L_0 = -log p(x_0 | x_1) (discretized Gaussian over ``num_levels`` levels) at t = 0, in nats,
    ``[B]``; x_t drawn from q(x_t | x_0) with ``key``; ``t [B]`` integer steps."""
    flat = lambda a: a.reshape(a.shape[0], -1)
    eps = jax.random.normal(key, x0.shape, x0.dtype)
    x_t = q_sample(schedule, x0, t, eps)
    out = apply_fn(params, x_t, t.astype(jnp.float32), y, cond)
    alpha, sigma = coeffs(schedule, t)
    _, x0_hat = param.eps_and_x0(prediction, out, x_t, alpha, sigma)
    true_mean, _, true_log_var = q_posterior(schedule, x0, x_t, t)
    model_mean, _, _ = q_posterior(schedule, x0_hat, x_t, t)
    model_log_var = model_log_variance(schedule, t, variance)
    ones = jnp.ones_like(flat(x0))
    kl = gaussian_kl_two(flat(true_mean), true_log_var[:, None] * ones,
                         flat(model_mean), model_log_var[:, None] * ones)
    decoder_nll = -discretized_gaussian_log_prob(
        x0, model_mean, 0.5 * model_log_var.reshape((-1,) + (1,) * (x0.ndim - 1)),
        num_levels=num_levels)
    return jnp.where(t == 0, decoder_nll, kl)


def prior_term(schedule: Schedule, x0: jax.Array) -> jax.Array:
    """L_T = KL(q(x_T | x_0) || N(0, I)) in nats, ``[B]`` (no parameters)."""
    flat = x0.reshape(x0.shape[0], -1)
    abar = schedule.alphas_cumprod[-1]
    return gaussian_kl_two(jnp.sqrt(abar) * flat, jnp.log1p(-abar) * jnp.ones_like(flat),
                           jnp.zeros_like(flat), jnp.zeros_like(flat))


def vlb(params: Any, x0: jax.Array, key: jax.Array, *, apply_fn: ApplyFn, schedule: Schedule,
        prediction: str, num_levels: int, variance: str = "posterior", num_timesteps: int = 0,
        y: jax.Array | None = None, cond: jax.Array | None = None) -> jax.Array:
    """The variational bound -log p(x_0) <= L_T + sum_{t=1}^{T-1} L_{t-1} + L_0 (seeds, eq. of
    Ho et al. Appendix A), nats per example ``[B]``, one ``lax.scan`` over steps.

    ``num_timesteps = 0`` sums all T terms (T network calls). ``num_timesteps = K`` takes one
    step per stratum of T/K consecutive steps per example and scales by the stratum size: an
    unbiased estimate of the same bound for K network calls.
    """
    T = schedule.num_steps
    kw = dict(apply_fn=apply_fn, schedule=schedule, prediction=prediction,
              num_levels=num_levels, variance=variance, y=y, cond=cond)
    B = x0.shape[0]
    if num_timesteps <= 0 or num_timesteps >= T:
        steps = (jnp.arange(T, dtype=jnp.int32)[:, None] * jnp.ones((1, B), jnp.int32),
                 jax.random.split(key, T))
        weight = 1.0
    else:
        K = num_timesteps
        u_key, key = jax.random.split(key)
        u = jax.random.uniform(u_key, (K, B))
        edges = jnp.arange(K, dtype=jnp.float32)[:, None]
        steps = (jnp.minimum(jnp.floor((edges + u) * T / K), T - 1).astype(jnp.int32),
                 jax.random.split(key, K))
        weight = T / K

    def body(total, inp):
        t, k = inp
        return total + vlb_term(params, x0, t, k, **kw), None

    total, _ = jax.lax.scan(body, jnp.zeros((B,), jnp.float32), steps)
    return prior_term(schedule, x0) + weight * total


def noisy_classifier_loss(params: Any, batch: dict, key: jax.Array, *, apply_fn: ApplyFn,
                          schedule: Schedule) -> tuple[jax.Array, dict]:
    """Cross-entropy -log p_phi(y | x_t, t) of a classifier of noisy images, t uniform over the
    steps (Dhariwal & Nichol 2021), ``apply_fn(params, x_t, t) -> logits [B, K]``."""
    x0, y = batch["image"], batch["label"]
    t_key, eps_key = jax.random.split(key)
    t = jax.random.randint(t_key, (x0.shape[0],), 0, schedule.num_steps)
    x_t = q_sample(schedule, x0, t, jax.random.normal(eps_key, x0.shape, x0.dtype))
    logits = apply_fn(params, x_t, t.astype(jnp.float32))
    ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
    acc = jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32))
    return ce, {"classifier_ce": ce, "classifier_acc": acc}
