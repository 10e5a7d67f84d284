"""Deterministic autoencoder objectives (notes 000, "Autoencoders"): L2 reconstruction, a latent
penalty (regularized AE) and reconstruction from a corrupted input (denoising AE).

`apply_fn(params, x) -> (x_hat [B, H, W, C], z [B, Z])`, e.g. `Autoencoder.apply` with the
variables dict as `params`. Losses are `(params, batch, key, *, apply_fn, ...) -> (loss,
metrics)`; the squared error is summed over pixels and averaged over the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Metrics = dict[str, jax.Array]


def squared_error(x: jax.Array, x_hat: jax.Array) -> jax.Array:
    """||x - x_hat||^2 per example. `[B, H, W, C] -> [B]`."""
    return jnp.sum(jnp.square(x - x_hat).reshape(x.shape[0], -1), axis=-1)


def l2_penalty(z: jax.Array) -> jax.Array:
    """Omega(z) = ||z||_2^2 per example. `[B, Z] -> [B]`."""
    return jnp.sum(jnp.square(z), axis=-1)


def l1_penalty(z: jax.Array) -> jax.Array:
    """Omega(z) = ||z||_1 per example (sparse AE). `[B, Z] -> [B]`."""
    return jnp.sum(jnp.abs(z), axis=-1)


def gaussian_corruption(key: jax.Array, x: jax.Array, noise_level: float) -> jax.Array:
    """x_tilde = x + noise_level * eps, eps ~ N(0, I)."""
    return x + noise_level * jax.random.normal(key, x.shape, x.dtype)


def masking_corruption(key: jax.Array, x: jax.Array, noise_level: float) -> jax.Array:
    """x_tilde = x * m, m_i ~ Bernoulli(1 - noise_level): each pixel zeroed with prob noise_level."""
    keep = jax.random.bernoulli(key, 1.0 - noise_level, x.shape)
    return jnp.where(keep, x, jnp.zeros_like(x))


LATENT_PENALTIES: dict[str, Callable[[jax.Array], jax.Array]] = {
    "l2": l2_penalty,
    "l1": l1_penalty,
}
CORRUPTIONS: dict[str, Callable[[jax.Array, jax.Array, float], jax.Array]] = {
    "gaussian": gaussian_corruption,
    "masking": masking_corruption,
}


def _lookup(table: dict[str, Callable], name: str | Callable, what: str) -> Callable:
    if callable(name):
        return name
    if name not in table:
        raise ValueError(f"{what} must be one of {tuple(table)} or a function, got {name!r}")
    return table[name]


def _l2_metrics(x: jax.Array, error: jax.Array) -> Metrics:
    return {"l2": jnp.mean(error), "mse": jnp.mean(error) / (x.size // x.shape[0])}


def reconstruction_loss(
    params, batch: dict[str, jax.Array], key: jax.Array, *, apply_fn: Callable
) -> tuple[jax.Array, Metrics]:
    """L2 autoencoder loss mean_b ||x - g(f(x))||^2 (`key` unused, kept for one signature).

    Metrics: "l2" (per image) and "mse" (per pixel).
    """
    del key
    x = batch["image"]  # [B, H, W, C]
    x_hat, _ = apply_fn(params, x)
    error = squared_error(x, x_hat)  # [B]
    return jnp.mean(error), _l2_metrics(x, error)


def regularized_ae_loss(
    params,
    batch: dict[str, jax.Array],
    key: jax.Array,
    *,
    apply_fn: Callable,
    weight: float,
    penalty: str | Callable[[jax.Array], jax.Array] = "l2",
) -> tuple[jax.Array, Metrics]:
    """Regularized AE: mean_b [||x - g(f(x))||^2 + weight * Omega(f(x))], Omega from
    `LATENT_PENALTIES` ("l2": ||z||^2, "l1": ||z||_1) or a function `[B, Z] -> [B]`.

    Metrics: "l2", "mse", "penalty".
    """
    del key
    omega = _lookup(LATENT_PENALTIES, penalty, "penalty")
    x = batch["image"]  # [B, H, W, C]
    x_hat, z = apply_fn(params, x)
    error = squared_error(x, x_hat)  # [B]
    reg = omega(z)  # [B]
    loss = jnp.mean(error + weight * reg)
    return loss, {**_l2_metrics(x, error), "penalty": jnp.mean(reg)}


def denoising_ae_loss(
    params,
    batch: dict[str, jax.Array],
    key: jax.Array,
    *,
    apply_fn: Callable,
    corruption: str | Callable = "gaussian",
    noise_level: float = 0.5,
) -> tuple[jax.Array, Metrics]:
    """Denoising AE: mean_b ||x - g(f(x_tilde))||^2 with x_tilde = corruption(key, x, noise_level).

    `CORRUPTIONS`: "gaussian" (noise_level = noise std) or "masking" (noise_level = probability
    of zeroing a pixel), or a function `(key, x, noise_level) -> x_tilde`. Metrics: "l2", "mse".
    """
    corrupt = _lookup(CORRUPTIONS, corruption, "corruption")
    x = batch["image"]  # [B, H, W, C]
    x_hat, _ = apply_fn(params, corrupt(key, x, noise_level))
    error = squared_error(x, x_hat)  # [B]
    return jnp.mean(error), _l2_metrics(x, error)
