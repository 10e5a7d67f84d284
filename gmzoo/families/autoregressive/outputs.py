"""Per-dimension conditionals of the autoregressive family: what a network's ``raw [..., P]``
means, the log-probability of every dimension, and a draw with a temperature.

| name             | x must be                      | P  | conditional               |
|------------------|--------------------------------|----|---------------------------|
| ``bernoulli``    | binary, 0 or 1                 | 1  | Bernoulli(sigmoid(logit)) |
| ``categorical``  | integer levels 0..L-1 as float | L  | softmax over the L levels |
| ``logistic_mix`` | integer levels 0..L-1 as float | 3K | K discretized logistics   |

``logistic_mix`` is PixelCNN++'s discretized logistic mixture (Salimans et al. 2017, eq. 2) on
the level centres c_k = 2k / (L - 1) - 1 of [-1, 1]: P(x = k) = sum_j pi_j [sigma((c_k + 1 /
(L - 1) - mu_j) / s_j) - sigma((c_k - 1 / (L - 1) - mu_j) / s_j)], with the edge levels taking
the tails (c_0 - delta -> -inf, c_{L-1} + delta -> +inf). ``raw = [mixture logits (K), means
(K), log scales (K)]``, log scales floored at -7 as PixelCNN++ does. Colour images get their
channel dependence from the networks' channel-group masks, not from PixelCNN++'s coupling
coefficients: each channel's mixture is conditioned on the channels before it.

The temperature T of :func:`draw` divides the log-probabilities of each conditional:
p_T(x_d = k | x_<d) ~ p(x_d = k | x_<d)^(1 / T), the same meaning for every likelihood (T = 1:
the model; T -> 0: the most likely level, one dimension at a time).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NAMES = ("bernoulli", "categorical", "logistic_mix")
MIN_LOG_SCALE = -7.0


def num_params(name: str, num_levels: int, components: int = 1) -> int:
    """P, the network outputs per dimension."""
    return {"bernoulli": 1, "categorical": num_levels, "logistic_mix": 3 * components}[name]


def level_log_probs(name: str, raw: jax.Array, num_levels: int) -> jax.Array:
    """log P(x_d = k | x_<d) for every level k: ``raw [..., P] -> [..., L]`` (L = 2 for
    ``bernoulli``), float32."""
    raw = raw.astype(jnp.float32)
    if name == "bernoulli":
        logit = raw[..., 0]
        return jnp.stack([jax.nn.log_sigmoid(-logit), jax.nn.log_sigmoid(logit)], -1)
    if name == "categorical":
        return jax.nn.log_softmax(raw, axis=-1)
    return _logistic_mix_level_log_probs(raw, num_levels)


def _logistic_mix_level_log_probs(raw: jax.Array, num_levels: int) -> jax.Array:
    k = raw.shape[-1] // 3
    logits, means = raw[..., :k], raw[..., k:2 * k]
    log_scales = jnp.maximum(raw[..., 2 * k:], MIN_LOG_SCALE)  # [..., K]
    centres = jnp.linspace(-1.0, 1.0, num_levels)  # [L]
    half = 1.0 / (num_levels - 1)
    inv_s = jnp.exp(-log_scales)[..., None, :]  # [..., 1, K]
    centred = centres[:, None] - means[..., None, :]  # [..., L, K]
    upper, lower = inv_s * (centred + half), inv_s * (centred - half)
    # log(sigma(u) - sigma(l)) without cancellation (the identity below the function)
    log_mid = (jax.nn.log_sigmoid(upper) + jax.nn.log_sigmoid(-lower)
               + jnp.log(-jnp.expm1(lower - upper)))
    first = jax.nn.log_sigmoid(upper)  # level 0: P(x <= c_0 + half)
    last = jax.nn.log_sigmoid(-lower)  # level L-1: P(x > c_{L-1} - half)
    index = jnp.arange(num_levels)[:, None]
    log_bins = jnp.where(index == 0, first, jnp.where(index == num_levels - 1, last, log_mid))
    return jax.nn.logsumexp(log_bins + jax.nn.log_softmax(logits, -1)[..., None, :], axis=-1)


# The identity: with a = sigma(u), b = sigma(l), l < u,
#   a - b = e^u / (1 + e^u) - e^l / (1 + e^l) = (e^u - e^l) / ((1 + e^u)(1 + e^l))
#         = (1 - e^{l - u}) e^u / ((1 + e^u)(1 + e^l)) = (1 - e^{l - u}) sigma(u) sigma(-l),
# so log(a - b) = log sigma(u) + log sigma(-l) + log(1 - e^{l - u}): no cancellation between
# two probabilities near 1 (the failure of log(sigma(u) - sigma(l)) in float32).


def log_prob(name: str, raw: jax.Array, x: jax.Array, num_levels: int) -> jax.Array:
    """log p(x_d | x_<d) of every dimension: ``raw [..., P]``, ``x [...]`` -> ``[...]``
    float32. Bernoulli through log-sigmoid, never log(sigmoid)."""
    if name == "bernoulli":
        logit = raw[..., 0].astype(jnp.float32)
        return x * jax.nn.log_sigmoid(logit) + (1.0 - x) * jax.nn.log_sigmoid(-logit)
    table = level_log_probs(name, raw, num_levels)  # [..., L]
    idx = jnp.clip(x, 0, num_levels - 1).astype(jnp.int32)[..., None]
    return jnp.take_along_axis(table, idx, axis=-1)[..., 0]


def draw(name: str, key: jax.Array, raw: jax.Array, temperature: float,
         num_levels: int) -> jax.Array:
    """One value per dimension from p_T(x_d | x_<d): ``raw [..., P] -> [...]`` float32 (0/1 or
    levels 0..L-1)."""
    if name == "bernoulli":
        logit = raw[..., 0].astype(jnp.float32) / temperature
        return jax.random.bernoulli(key, jax.nn.sigmoid(logit)).astype(jnp.float32)
    table = level_log_probs(name, raw, num_levels)  # [..., L]
    return jax.random.categorical(key, table / temperature, axis=-1).astype(jnp.float32)


def check_temperature(temperature: float) -> str | None:
    """Why ``temperature`` cannot be used, or None (it must be a finite number > 0)."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        return f"temperature={temperature!r} must be a number > 0"
    if not temperature > 0 or temperature != temperature or temperature == float("inf"):
        return f"temperature={temperature} must be a finite number > 0 (1: the model itself)"
    return None
