"""Generation from trained VAEs: prior draw(s), decode, then the likelihood's data space.

Pure functions, no jit inside (the caller jits). `apply_fn(params, *args, method=...)` is
Linen-style, e.g. `VAE.apply` with the variables dict as `params`. Outputs `[n, H, W, C]`, in
the range the likelihood models (see `gmzoo.losses.likelihoods`):

| likelihood             | mean=True                       | mean=False                         |
|------------------------|---------------------------------|------------------------------------|
| "bernoulli"            | probabilities sigmoid(logits)   | Bernoulli draws in {0, 1}          |
| "gaussian"             | mean                            | mean + scale * eps                 |
| "discretized_logistic" | mean clipped to [-1, 1]         | logistic draw on the L-level grid  |
| "categorical"          | expected level sum_k k p_k      | level draws in 0..L-1 (as float)   |
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gmzoo.nn.heads import HEAD_LIKELIHOODS, DecoderOutput


def sample_likelihood(
    key: jax.Array, decoder_output: DecoderOutput, *, likelihood: str,
    num_levels: int | None = None, mean: bool = True,
) -> jax.Array:
    """Map decoder output to data space: its mean (`mean=True`) or a draw x ~ p(x | z)."""
    if likelihood == "bernoulli":
        probs = jax.nn.sigmoid(decoder_output)
        return probs if mean else jax.random.bernoulli(key, probs).astype(probs.dtype)
    if likelihood == "gaussian":
        loc, log_scale = decoder_output
        return loc if mean else loc + jnp.exp(log_scale) * jax.random.normal(key, loc.shape)
    if likelihood == "discretized_logistic":
        loc, log_scale = decoder_output
        if mean:
            return jnp.clip(loc, -1.0, 1.0)
        if num_levels is None:
            raise ValueError("sampling a discretized_logistic needs num_levels (e.g. 17 or 256)")
        x = jnp.clip(loc + jnp.exp(log_scale) * jax.random.logistic(key, loc.shape), -1.0, 1.0)
        level = jnp.round((x + 1.0) * (num_levels - 1) / 2.0)  # k in 0..L-1
        return 2.0 * level / (num_levels - 1) - 1.0
    if likelihood == "categorical":
        logits = decoder_output  # [n, H, W, C, L]
        if mean:
            levels = jnp.arange(logits.shape[-1], dtype=logits.dtype)
            return jnp.sum(jax.nn.softmax(logits, axis=-1) * levels, axis=-1)
        return jax.random.categorical(key, logits, axis=-1).astype(logits.dtype)
    raise ValueError(f"likelihood must be one of {HEAD_LIKELIHOODS}, got {likelihood!r}")


def sample_vae(
    params, key: jax.Array, n: int, *, apply_fn: Callable, latent_dim: int, likelihood: str,
    num_levels: int | None = None, mean: bool = True,
) -> jax.Array:
    """z ~ N(0, I) `[n, Z]`, x = decode(z) in data space (`sample_likelihood`). `[n, H, W, C]`."""
    key_z, key_x = jax.random.split(key)
    z = jax.random.normal(key_z, (n, latent_dim))  # [n, Z]
    decoder_output = apply_fn(params, z, method="decode")
    return sample_likelihood(
        key_x, decoder_output, likelihood=likelihood, num_levels=num_levels, mean=mean
    )


def sample_hierarchical_vae(
    params, key: jax.Array, n: int, *, apply_fn: Callable, latent_dim: int, num_layers: int,
    likelihood: str, num_levels: int | None = None, mean: bool = True,
) -> jax.Array:
    """Ancestral sampling of the Markovian HVAE: z_T ~ N(0, I), z_t ~ p(z_t | z_{t+1}) for
    t = T-1 .. 1 (always drawn), then x from p(x | z_1) as in `sample_likelihood`."""
    keys = jax.random.split(key, num_layers + 1)
    z = jax.random.normal(keys[num_layers - 1], (n, latent_dim))  # z_T [n, Z]
    for layer in range(num_layers - 1, 0, -1):
        prior_mean, prior_log_var = apply_fn(params, z, layer, method="prior")
        noise = jax.random.normal(keys[layer - 1], prior_mean.shape)
        z = prior_mean + jnp.exp(0.5 * prior_log_var) * noise  # z_layer [n, Z]
    decoder_output = apply_fn(params, z, method="decode")
    return sample_likelihood(
        keys[num_layers], decoder_output, likelihood=likelihood, num_levels=num_levels, mean=mean
    )
