"""Decoder heads: per-pixel raw outputs -> the parameters of an observation likelihood.

A decoder network produces `[B, H, W, C, P]` unconstrained numbers; `likelihood_params` turns
them into what the matching log-likelihood in `gmzoo.losses.likelihoods` takes:

| likelihood             | P | decoder output                                           |
|------------------------|---|----------------------------------------------------------|
| "bernoulli"            | 1 | logits `[B, H, W, C]`                                     |
| "gaussian"             | 2 | `(mean, log_scale)`, each `[B, H, W, C]`                  |
| "discretized_logistic" | 2 | `(mean, log_scale)`, each `[B, H, W, C]`                  |
| "categorical"          | L | logits `[B, H, W, C, L]` over the L levels (`num_levels`) |

`log_scale` is bounded below softly, `log_scale = m + softplus(raw - m)` with `m =
min_log_scale`, so a continuous density cannot collapse onto constant pixels.
"""

from __future__ import annotations

import jax

DecoderOutput = jax.Array | tuple[jax.Array, jax.Array]

HEAD_LIKELIHOODS: tuple[str, ...] = ("bernoulli", "gaussian", "discretized_logistic", "categorical")


def likelihood_head_error(likelihood: str, num_levels: int) -> str | None:
    """Why `likelihood` / `num_levels` cannot configure a decoder head, or None."""
    if likelihood not in HEAD_LIKELIHOODS:
        return f"likelihood must be one of {HEAD_LIKELIHOODS}, got {likelihood!r}"
    if likelihood == "categorical" and num_levels < 2:
        return f"categorical likelihood needs num_levels >= 2, got {num_levels}"
    return None


def num_likelihood_params(likelihood: str, num_levels: int) -> int:
    """Raw decoder outputs per pixel and channel for `likelihood` (see the module table)."""
    return {"bernoulli": 1, "gaussian": 2, "discretized_logistic": 2, "categorical": num_levels}[
        likelihood
    ]


def likelihood_params(raw: jax.Array, likelihood: str, min_log_scale: float) -> DecoderOutput:
    """Split raw `[B, H, W, C, P]` decoder outputs into the likelihood's parameters."""
    if likelihood == "bernoulli":
        return raw[..., 0]  # [B, H, W, C] logits
    if likelihood in ("gaussian", "discretized_logistic"):
        mean = raw[..., 0]  # [B, H, W, C]
        log_scale = min_log_scale + jax.nn.softplus(raw[..., 1] - min_log_scale)  # [B, H, W, C]
        return mean, log_scale
    if likelihood == "categorical":
        return raw  # [B, H, W, C, L] logits
    raise ValueError(f"likelihood must be one of {HEAD_LIKELIHOODS}, got {likelihood!r}")

