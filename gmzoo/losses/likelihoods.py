"""Observation log-likelihoods log p(x | decoder output), one number per example in nats.

Each function sums over every non-batch axis of x `[B, H, W, C]` and returns `[B]`. The caller
transforms `batch["image"]` into the range the likelihood expects before the loss:

| name                   | x must be                                   | decoder output             |
|------------------------|---------------------------------------------|----------------------------|
| "bernoulli"            | binary, x in {0, 1}                          | logits `[B,H,W,C]`         |
| "gaussian"             | real (gmzoo scales images to [-1, 1])        | (mean, log_scale)          |
| "discretized_logistic" | on the L-level grid of [-1, 1]: 2k/(L-1) - 1 | (mean, log_scale)          |
| "categorical"          | integer levels 0..L-1 stored as float        | logits `[B,H,W,C,L]`       |

The Gaussian is a density over the reals: its value is not a probability of the discrete
pixels and is not comparable with the bits/dim of the three discrete likelihoods.

`LIKELIHOODS` is the one table of names; `resolve_likelihood` turns a name (or a user function
`(x, decoder_output) -> [B]`) into such a function.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr
from jax.typing import ArrayLike

from gmzoo.nn.heads import DecoderOutput

LogLikelihood = Callable[[jax.Array, DecoderOutput], jax.Array]

_LOG_2PI = math.log(2.0 * math.pi)


def _sum_per_example(t: jax.Array) -> jax.Array:
    """`[B, ...] -> [B]`."""
    return jnp.sum(t.reshape(t.shape[0], -1), axis=-1)


def bernoulli_log_prob(x: ArrayLike, logits: ArrayLike) -> jax.Array:
    """sum_i x_i log sigmoid(l_i) + (1 - x_i) log sigmoid(-l_i), x in {0, 1}. `[B,H,W,C] -> [B]`."""
    x, logits = jnp.asarray(x), jnp.asarray(logits)
    log_p = x * jax.nn.log_sigmoid(logits) + (1.0 - x) * jax.nn.log_sigmoid(-logits)
    return _sum_per_example(log_p)


def gaussian_log_prob(x: ArrayLike, mean: ArrayLike, log_scale: ArrayLike) -> jax.Array:
    """sum_i log N(x_i; mean_i, exp(log_scale_i)^2), a density over real x. `[B,H,W,C] -> [B]`."""
    x, mean, log_scale = jnp.asarray(x), jnp.asarray(mean), jnp.asarray(log_scale)
    log_p = -0.5 * _LOG_2PI - log_scale - 0.5 * jnp.square((x - mean) * jnp.exp(-log_scale))
    return _sum_per_example(log_p)


def discretized_logistic_log_prob(
    x: ArrayLike, mean: ArrayLike, log_scale: ArrayLike, *, num_levels: int
) -> jax.Array:
    """Discretized logistic (Salimans et al. 2017, PixelCNN++) over L = num_levels levels.

    x lies on the grid 2k/(L-1) - 1 of [-1, 1]; level k gets the logistic mass of the bin
    [x - 1/(L-1), x + 1/(L-1)], with the first and last bins extended to -inf and +inf, so the
    L probabilities sum to 1. The middle-bin mass sigmoid(a) - sigmoid(b) (a > b) is taken as
    log sigmoid(a) - softplus(b) + log(-expm1(b - a)), stable for any mean and scale.
    `[B, H, W, C] -> [B]`.
    """
    if num_levels < 2:
        raise ValueError(f"discretized_logistic needs num_levels >= 2, got {num_levels}")
    x, mean, log_scale = jnp.asarray(x), jnp.asarray(mean), jnp.asarray(log_scale)
    half_bin = 1.0 / (num_levels - 1)
    inv_scale = jnp.exp(-log_scale)
    upper = inv_scale * (x - mean + half_bin)  # a: standardized upper bin edge
    lower = inv_scale * (x - mean - half_bin)  # b: standardized lower bin edge
    log_cdf_upper = jax.nn.log_sigmoid(upper)  # first bin: P(X <= upper)
    log_survival_lower = -jax.nn.softplus(lower)  # last bin: P(X > lower)
    log_mass = log_cdf_upper - jax.nn.softplus(lower) + jnp.log(-jnp.expm1(lower - upper))
    level = jnp.round((x + 1.0) / (2.0 * half_bin))  # k in 0..L-1
    log_p = jnp.where(
        level <= 0, log_cdf_upper, jnp.where(level >= num_levels - 1, log_survival_lower, log_mass)
    )
    return _sum_per_example(log_p)


def discretized_gaussian_log_prob(
    x: ArrayLike, mean: ArrayLike, log_scale: ArrayLike, *, num_levels: int
) -> jax.Array:
    """Discretized Gaussian (Ho et al. 2020, eq. 13: the DDPM decoder p(x_0 | x_1)) over L levels.

    The same bins as :func:`discretized_logistic_log_prob`: level k of the grid 2k/(L-1) - 1 gets
    the N(mean, scale^2) mass of [x - 1/(L-1), x + 1/(L-1)], the end bins extended to -inf and
    +inf. The mass Phi(a) - Phi(b) is computed on the side of the mean where it does not cancel
    (Phi(-b) - Phi(-a) when b > 0), in log space. `[B, H, W, C] -> [B]`.
    """
    if num_levels < 2:
        raise ValueError(f"discretized_gaussian needs num_levels >= 2, got {num_levels}")
    x, mean, log_scale = jnp.asarray(x), jnp.asarray(mean), jnp.asarray(log_scale)
    half_bin = 1.0 / (num_levels - 1)
    inv_scale = jnp.exp(-log_scale)
    upper = inv_scale * (x - mean + half_bin)
    lower = inv_scale * (x - mean - half_bin)
    flip = lower > 0  # both edges above the mean: use the mirrored (lower-tail) edges
    hi, lo = jnp.where(flip, -lower, upper), jnp.where(flip, -upper, lower)
    log_hi, log_lo = log_ndtr(hi), log_ndtr(lo)
    log_mass = log_hi + jnp.log(-jnp.expm1(jnp.minimum(log_lo - log_hi, -1e-30)))
    level = jnp.round((x + 1.0) / (2.0 * half_bin))
    log_p = jnp.where(level <= 0, log_ndtr(upper),
                      jnp.where(level >= num_levels - 1, log_ndtr(-lower), log_mass))
    return _sum_per_example(log_p)


def categorical_log_prob(x: ArrayLike, logits: ArrayLike) -> jax.Array:
    """sum_i log softmax(logits_i)[x_i] with x_i in 0..L-1 (float levels; out of range -> NaN).

    x `[B, H, W, C]`, logits `[B, H, W, C, L]` -> `[B]`.
    """
    x, logits = jnp.asarray(x), jnp.asarray(logits)
    level = jnp.round(x).astype(jnp.int32)[..., None]  # [B, H, W, C, 1]
    log_probs = jax.nn.log_softmax(logits, axis=-1)  # [B, H, W, C, L]
    log_p = jnp.take_along_axis(log_probs, level, axis=-1, mode="fill", fill_value=jnp.nan)
    return _sum_per_example(log_p[..., 0])


LIKELIHOODS: dict[str, Callable[..., jax.Array]] = {
    "bernoulli": bernoulli_log_prob,
    "gaussian": gaussian_log_prob,
    "discretized_logistic": discretized_logistic_log_prob,
    "categorical": categorical_log_prob,
}
_NEEDS_NUM_LEVELS = ("discretized_logistic",)


def resolve_likelihood(
    likelihood: str | LogLikelihood, *, num_levels: int | None = None
) -> LogLikelihood:
    """A function `(x, decoder_output) -> [B]` log p(x | .) for a name in `LIKELIHOODS`.

    A callable is returned unchanged (it must take `(x, decoder_output)`). Decoder outputs
    that are tuples, e.g. `(mean, log_scale)`, are unpacked into the named function.
    "discretized_logistic" needs `num_levels`.
    """
    if callable(likelihood):
        return likelihood
    if likelihood not in LIKELIHOODS:
        raise ValueError(
            f"likelihood must be one of {tuple(LIKELIHOODS)} or a function, got {likelihood!r}"
        )
    log_prob = LIKELIHOODS[likelihood]
    if likelihood in _NEEDS_NUM_LEVELS:
        if num_levels is None:
            raise ValueError(f"likelihood {likelihood!r} needs num_levels (e.g. 17 or 256)")
        log_prob = functools.partial(log_prob, num_levels=num_levels)

    def log_likelihood(x: jax.Array, decoder_output: DecoderOutput) -> jax.Array:
        params = decoder_output if isinstance(decoder_output, tuple) else (decoder_output,)
        return log_prob(x, *params)

    return log_likelihood
