"""The objective and the held-out likelihood of models with an exact log p(x): the
autoregressive family (teacher forcing) and normalizing flows (change of variables).

- :func:`nll_loss`: mean -log p(x [| y]) over the batch in nats, with ``nll`` and
  ``bits_per_dim`` metrics, from any ``log_prob_fn(params, x, label, key) -> [B]``.
- :func:`marginal_log_prob`: log p(x) = log (1/K) sum_y p(x | y) of a class-conditional model
  with a uniform p(y), exactly, by running it once per class.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

from gmzoo.data.transforms import bits_per_dim


def nll_loss(params: Any, batch: dict, key: jax.Array, *, log_prob_fn: Callable,
             conditional: bool, dequantization_nats_per_dim: float = 0.0
             ) -> tuple[jax.Array, dict]:
    """Mean -log p(x [| y]) over the batch in nats (``log_prob_fn(params, x, label, key) ->
    [B]``, label None unless ``conditional``); metrics: ``nll`` (nats per example) and
    ``bits_per_dim`` of the discrete data: for a density of dequantized data, pass the data
    space's ``dequantization_nats_per_dim`` (:class:`gmzoo.data.preprocess.DataSpace`; log L
    on [0, 1)), which bits/dim counts as ``gmzoo evaluate`` does: (NLL / D + log L) / log 2."""
    x = batch["image"]
    label = batch["label"].astype(jnp.int32) if conditional else None
    nll = -jnp.mean(log_prob_fn(params, x, label, key))
    dims = math.prod(x.shape[1:])
    return nll, {"nll": nll,
                 "bits_per_dim": bits_per_dim(nll + dims * dequantization_nats_per_dim, dims)}


def marginal_log_prob(log_prob_fn: Callable, params: Any, x: jax.Array,
                      num_classes: int) -> jax.Array:
    """log p(x) = log (1/K) sum_y p(x | y) of a class-conditional model, exactly, from
    ``log_prob_fn(params, x, label) -> [B]``: ``[B]`` (one pass per class, ``lax.map``)."""
    def one(y):
        return log_prob_fn(params, x, jnp.full((x.shape[0],), y, jnp.int32))

    per_class = jax.lax.map(one, jnp.arange(num_classes))  # [K, B]
    return jax.nn.logsumexp(per_class, axis=0) - math.log(num_classes)
