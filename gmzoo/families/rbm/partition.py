"""The partition function Z = sum_{v, h} exp(-E(v, h)) of an RBM: exactly by enumeration, or by
annealed importance sampling, and the held-out NLL built on either.

- :func:`log_partition_exact`: sums exp(-F) over every state of the smaller layer (2^min(V, H)
  terms, in chunks, one ``lax.scan``); cheap on CPU up to about 20 units.
- :func:`ais` (Neal 2001; Salakhutdinov & Murray 2008, "On the quantitative analysis of deep
  belief networks", section 4): from the base-rate model p_A(v) = prod_i Bernoulli(v_i;
  sigmoid(b^A_i)) (W = 0, c = 0, b^A the log-odds of the data marginals) along the
  geometric path p_beta(v) ~ p*_A(v)^(1 - beta) p*_B(v)^beta, which is itself an RBM with
  visible biases (1 - beta) b^A + beta b, weights beta W and hidden biases beta c (the base
  keeps the target's H hidden units with W = 0, c = 0, so p*_0 = p*_A carries 2^H):

    log p*_beta(v) = (1 - beta) b^A.v + beta b.v + sum_j softplus(beta (c_j + v.W_j))

  M independent chains start at v_1 ~ p_A; with 0 = beta_0 < beta_1 < ... < beta_K = 1,
    log w = sum_{k=1}^{K} [log p*_{beta_k}(v_k) - log p*_{beta_{k-1}}(v_k)],
  v_{k+1} ~ T_k(v_k) a Gibbs step that leaves p_{beta_k} invariant (the transition at the
  *previous* temperature; the next weight increment is evaluated at the state it produced). Then
    log Z_B ~ log Z_A + logsumexp_m(log w_m) - log M,   log Z_A = sum_i softplus(b^A_i) + H log 2.
  The weights are averaged in the exp space with logsumexp over the M chains (averaging log w,
  or dividing by anything but M, is the bug of tensorflow/probability#267). E[Z-hat] = Z, so
  log Z-hat is biased low on average (Jensen) and the NLL built on it biased optimistic.

Betas are data: :func:`ais_betas` gives Salakhutdinov & Murray's schedule at any length.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gmzoo.families.rbm.rbm import (Params, flatten, free_energy, hidden_free_energy,
                                   sample_bernoulli)

MAX_ENUMERATED_UNITS = 24  # 2^24 states: minutes on CPU for large layers; ~20 is cheap


def _states(start: jax.Array, count: int, num_units: int, dtype) -> jax.Array:
    """The binary states ``start .. start + count - 1`` of ``num_units`` bits, ``[count, n]``."""
    idx = start + jnp.arange(count, dtype=jnp.int32)
    return ((idx[:, None] >> jnp.arange(num_units, dtype=jnp.int32)) & 1).astype(dtype)


def log_partition_exact(params: Params, *, chunk: int = 2 ** 14) -> jax.Array:
    """log Z by summing exp(-F) over every state of the smaller layer: F(v) (hidden summed
    out) when V <= H, else F(h) (visible summed out). One ``lax.scan`` over chunks of
    ``chunk`` states with a running logsumexp. -> scalar (float32 or the params' dtype)."""
    num_v, num_h = params["W"].shape
    n = min(num_v, num_h)
    if n > MAX_ENUMERATED_UNITS:
        raise ValueError(f"exact log Z enumerates 2^{n} states of the smaller layer (V={num_v}, "
                         f"H={num_h}); at most 2^{MAX_ENUMERATED_UNITS} are allowed: use ais")
    neg_free = ((lambda s: -free_energy(params, s)) if num_v <= num_h
                else (lambda s: -hidden_free_energy(params, s)))
    total = 2 ** n
    chunk = min(chunk, total)
    dtype = params["W"].dtype

    def body(acc, start):
        return jnp.logaddexp(acc, jax.nn.logsumexp(neg_free(_states(start, chunk, n, dtype)))), None

    starts = jnp.arange(0, total, chunk, dtype=jnp.int32)
    acc, _ = jax.lax.scan(body, jnp.array(-jnp.inf, dtype), starts)
    return acc


def ais_betas(num: int) -> np.ndarray:
    """``num + 1`` inverse temperatures 0 = beta_0 < ... < beta_num = 1 spaced as in
    Salakhutdinov & Murray (2008): 500 uniform in [0, 0.5), 4,000 in [0.5, 0.9) and 10,000 in
    [0.9, 1] at ``num = 14500``, the same proportions at any other length."""
    if num < 3:
        raise ValueError(f"ais_betas needs num >= 3 intermediate steps, got {num}")
    n1 = max(1, round(num * 500 / 14500))
    n2 = max(1, round(num * 4000 / 14500))
    n3 = num - n1 - n2
    return np.concatenate([np.linspace(0.0, 0.5, n1, endpoint=False),
                           np.linspace(0.5, 0.9, n2, endpoint=False),
                           np.linspace(0.9, 1.0, n3 + 1)]).astype(np.float32)


class AISResult(NamedTuple):
    """An AIS estimate of log Z (nats) and its uncertainty over the M chains.

    ``log_z_se`` is the delta-method standard error of log Z-hat, sd(w) / (sqrt(M) mean(w));
    ``log_z_lower`` / ``log_z_upper`` are log(Z-hat -/+ 3 sd(Z-hat)) (Salakhutdinov & Murray's
    interval; the lower end is -inf when 3 sd exceeds Z-hat); ``ess`` = (sum w)^2 / sum w^2.
    """

    log_z: jax.Array
    log_z_se: jax.Array
    log_z_lower: jax.Array
    log_z_upper: jax.Array
    ess: jax.Array
    log_weights: jax.Array  # [M]
    log_z_base: jax.Array


def log_mean_exp(log_w: ArrayLike) -> jax.Array:
    """log((1 / M) sum_m exp(log_w_m)) over the last axis: the AIS / importance-sampling mean
    of the weights, taken in the exp space and normalised by the number of chains M."""
    log_w = jnp.asarray(log_w)
    return jax.nn.logsumexp(log_w, axis=-1) - math.log(log_w.shape[-1])


def summarize_log_weights(log_w: ArrayLike, log_z_base: ArrayLike) -> AISResult:
    """The :class:`AISResult` of log importance weights ``[M]`` (M >= 2) from a base with
    log-normaliser ``log_z_base``."""
    log_w = jnp.asarray(log_w, jnp.float32)
    m = log_w.shape[0]
    log_mean = log_mean_exp(log_w)
    r = jnp.exp(log_w - log_mean)  # w / mean(w), mean 1
    rel_sd = jnp.std(r, ddof=1) / math.sqrt(m)  # sd(Z-hat) / Z-hat
    log_z = log_z_base + log_mean
    lower = jnp.where(3.0 * rel_sd < 1.0, log_z + jnp.log1p(-jnp.minimum(3.0 * rel_sd, 1.0 - 1e-7)),
                      -jnp.inf)
    return AISResult(log_z=log_z, log_z_se=rel_sd, log_z_lower=lower,
                     log_z_upper=log_z + jnp.log1p(3.0 * rel_sd),
                     ess=jnp.sum(r) ** 2 / jnp.sum(r ** 2), log_weights=log_w,
                     log_z_base=jnp.asarray(log_z_base, jnp.float32))


def _delta_log_unnormalized(params: Params, base_logits: jax.Array, v: jax.Array,
                            x: jax.Array, beta: jax.Array, beta_next: jax.Array) -> jax.Array:
    """log p*_{beta_next}(v) - log p*_beta(v) ``[M]`` with x = c + v W ``[M, H]``, written so
    that nothing large cancels: softplus(b' x) - softplus(b x) = (b' - b) relu(x) +
    log1p(e^{-b' |x|}) - log1p(e^{-b |x|}) for b, b' >= 0."""
    d = beta_next - beta
    visible = d * (v @ (params["b"] - base_logits))
    hidden = (d * jax.nn.relu(x) + jnp.log1p(jnp.exp(-beta_next * jnp.abs(x)))
              - jnp.log1p(jnp.exp(-beta * jnp.abs(x))))
    return visible + jnp.sum(hidden, axis=-1)


def ais_log_weights(params: Params, key: jax.Array, base_logits: ArrayLike, betas: ArrayLike,
                    num_chains: int) -> jax.Array:
    """The log importance weights ``[num_chains]`` of AIS from the base-rate model with visible
    logits ``base_logits`` ``[V]`` to ``params`` along ``betas`` ``[K + 1]`` (0 first, 1
    last), one ``lax.scan`` over the K - 1 intermediate temperatures (module docstring)."""
    betas = jnp.asarray(betas, jnp.float32)
    base_logits = jnp.asarray(base_logits, jnp.float32)
    W, b, c = params["W"], params["b"], params["c"]
    init_key, scan_key = jax.random.split(key)
    v = sample_bernoulli(init_key, jnp.broadcast_to(base_logits, (num_chains, base_logits.shape[0])))
    x = c + v @ W  # [M, H]
    log_w = _delta_log_unnormalized(params, base_logits, v, x, betas[0], betas[1])

    def body(carry, inputs):
        v, x, log_w = carry
        beta, beta_next, key = inputs
        h_key, v_key = jax.random.split(key)
        # T_k: a Gibbs step of the intermediate RBM at beta (visible biases (1 - beta) b^A +
        # beta b, weights beta W, hidden biases beta c), which leaves p_beta invariant.
        h = sample_bernoulli(h_key, beta * x)
        v = sample_bernoulli(v_key, (1.0 - beta) * base_logits + beta * (b + h @ W.T))
        x = c + v @ W
        return (v, x, log_w + _delta_log_unnormalized(params, base_logits, v, x, beta, beta_next)), None

    steps = (betas[1:-1], betas[2:], jax.random.split(scan_key, betas.shape[0] - 2))
    (_, _, log_w), _ = jax.lax.scan(body, (v, x, log_w), steps)
    return log_w


def ais(params: Params, key: jax.Array, base_logits: ArrayLike, betas: ArrayLike,
        num_chains: int) -> AISResult:
    """AIS estimate of log Z (Salakhutdinov & Murray 2008) from the base-rate model with visible
    logits ``base_logits`` ``[V]`` (e.g. :func:`~gmzoo.families.rbm.rbm.base_rate_logits` of the
    training data) over ``num_chains`` (>= 2) chains and the temperatures ``betas``."""
    if num_chains < 2:
        raise ValueError(f"ais needs num_chains >= 2 for a standard error, got {num_chains}")
    if np.ndim(betas) != 1 or np.shape(betas)[0] < 3:
        raise ValueError("ais needs betas [K + 1] with K >= 2, from 0 to 1 (see ais_betas)")
    log_w = ais_log_weights(params, key, base_logits, betas, num_chains)
    # The base RBM keeps its H hidden units (W = 0, c = 0): each contributes a factor
    # 1 + e^0 = 2 to p*_0, so log Z_A counts H log 2 beside the visible softplus terms.
    num_hidden = params["W"].shape[1]
    log_z_base = (jnp.sum(jax.nn.softplus(jnp.asarray(base_logits, jnp.float32)))
                  + num_hidden * math.log(2.0))
    return summarize_log_weights(log_w, log_z_base)


class HeldoutNLL(NamedTuple):
    """Mean NLL (nats / example) = mean F(v) + log Z and its standard error, combining the
    spread of F over the n test examples (sd / sqrt(n)) and log Z's (independent)."""

    nll: jax.Array
    se: jax.Array
    se_log_z: jax.Array
    se_examples: jax.Array


def heldout_nll(params: Params, v: ArrayLike, log_z: ArrayLike, log_z_se: ArrayLike = 0.0
                ) -> HeldoutNLL:
    """-mean log p(v) = mean F(v) + log Z over binary ``v`` ``[n, V]`` (n >= 2), with the
    standard error of log Z propagated."""
    f = free_energy(params, flatten(v)).astype(jnp.float32)  # [n]
    se_examples = jnp.std(f, ddof=1) / math.sqrt(f.shape[0])
    log_z_se = jnp.asarray(log_z_se, jnp.float32)
    return HeldoutNLL(nll=jnp.mean(f) + log_z, se=jnp.sqrt(se_examples ** 2 + log_z_se ** 2),
                      se_log_z=log_z_se, se_examples=se_examples)
