"""Bernoulli-Bernoulli restricted Boltzmann machine: energy, free energy, conditionals, block
Gibbs sampling and the contrastive-divergence objectives, as pure functions of the parameters.

Parameters ``{"W": [V, H], "b": [V], "c": [H]}``, visible ``v`` in {0, 1}^V, hidden ``h`` in
{0, 1}^H (Smolensky 1986; Hinton 2002; Hinton, "A practical guide to training RBMs", 2010):

  E(v, h) = -b.v - c.h - v W h
  F(v)    = -log sum_h exp(-E(v, h)) = -b.v - sum_j softplus(c_j + v.W_j)       (free energy)
  p(h_j = 1 | v) = sigmoid(c_j + v.W_j),   p(v_i = 1 | h) = sigmoid(b_i + W_i.h)
  p(v) = exp(-F(v)) / Z,   -d log p(v) / d theta = dF(v)/d theta - E_{v' ~ p}[dF(v')/d theta]

The model expectation is intractable; contrastive divergence replaces it by the mean over
samples ``v_model`` of a Gibbs chain: CD-k (Hinton 2002) starts the chain at the data and runs k
steps, PCD (Tieleman 2008, "stochastic maximum likelihood") keeps persistent chains that carry
over from one parameter update to the next. Both are written as a *surrogate* loss

  L(theta) = mean_data F(v) - mean_model F(stop_gradient(v_model))

whose gradient is the CD / PCD estimate of the gradient of the negative log-likelihood, so any
optax step trains it. L is a free-energy gap, not a likelihood: held-out likelihoods come from
:mod:`gmzoo.families.rbm.partition` (exact log Z or AIS).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

Params = dict[str, jax.Array]


class RBM(nn.Module):
    """Declares the parameters (and PCD's chains) of an RBM with ``num_visible`` x
    ``num_hidden`` units, initialised from the batch it is initialised on.

    ``W ~ N(0, init_scale^2)`` (scikit-learn's ``BernoulliRBM``: 0.01), ``c = 0`` and ``b`` the
    log-odds of the batch's smoothed marginals (Hinton 2010, section 8). With ``num_chains``,
    ``init`` also returns the collection ``{"chains": {"v": [num_chains, V]}}`` drawn from those
    marginals (PCD's persistent chains). Calling it returns the free energy ``F(v)`` ``[B]`` of
    ``v`` ``[B, ...]`` (flattened to ``[B, V]``); everything else is a pure function of the
    ``"params"`` collection. ``image_shape`` is what samples are reshaped to.
    """

    num_visible: int
    num_hidden: int
    init_scale: float = 0.01
    num_chains: int = 0
    image_shape: tuple[int, ...] = ()

    @nn.compact
    def __call__(self, v: jax.Array) -> jax.Array:
        v = flatten(v)
        params = {
            "W": self.param("W", nn.initializers.normal(self.init_scale),
                            (self.num_visible, self.num_hidden)),
            "b": self.param("b", lambda key: base_rate_logits(v)),
            "c": self.param("c", nn.initializers.zeros, (self.num_hidden,)),
        }
        if self.num_chains and self.is_initializing():
            logits = jnp.broadcast_to(params["b"], (self.num_chains, self.num_visible))
            self.variable("chains", "v", lambda: sample_bernoulli(self.make_rng("params"), logits))
        return free_energy(params, v)


def flatten(v: ArrayLike) -> jax.Array:
    """Images ``[B, H, W, C]`` (or anything ``[B, ...]``) as visible vectors ``[B, V]``."""
    v = jnp.asarray(v)
    return v.reshape(v.shape[0], -1)


def _like(x: ArrayLike, params: Params) -> jax.Array:
    """``x`` in the parameters' dtype (so a bfloat16 compute cast reaches the products)."""
    return jnp.asarray(x).astype(params["W"].dtype)


def energy(params: Params, v: ArrayLike, h: ArrayLike) -> jax.Array:
    """E(v, h) = -b.v - c.h - v W h. ``v`` ``[B, V]``, ``h`` ``[B, H]`` -> ``[B]``."""
    v, h = _like(v, params), _like(h, params)
    return -(v @ params["b"]) - (h @ params["c"]) - jnp.sum((v @ params["W"]) * h, axis=-1)


def hidden_logits(params: Params, v: ArrayLike) -> jax.Array:
    """c + v W, the logits of p(h = 1 | v). ``[B, V]`` -> ``[B, H]``."""
    return params["c"] + _like(v, params) @ params["W"]


def visible_logits(params: Params, h: ArrayLike) -> jax.Array:
    """b + h W^T, the logits of p(v = 1 | h). ``[B, H]`` -> ``[B, V]``."""
    return params["b"] + _like(h, params) @ params["W"].T


def free_energy(params: Params, v: ArrayLike) -> jax.Array:
    """F(v) = -b.v - sum_j softplus(c_j + v.W_j) (the hidden layer summed out). ``[B, V]`` ->
    ``[B]``; p(v) = exp(-F(v)) / Z."""
    v = _like(v, params)
    return -(v @ params["b"]) - jnp.sum(jax.nn.softplus(hidden_logits(params, v)), axis=-1)


def hidden_free_energy(params: Params, h: ArrayLike) -> jax.Array:
    """F(h) = -c.h - sum_i softplus(b_i + W_i.h) (the visible layer summed out), the dual of
    :func:`free_energy`: sum_h exp(-F(h)) = Z as well. ``[B, H]`` -> ``[B]``."""
    h = _like(h, params)
    return -(h @ params["c"]) - jnp.sum(jax.nn.softplus(visible_logits(params, h)), axis=-1)


def sample_bernoulli(key: jax.Array, logits: jax.Array) -> jax.Array:
    """A {0, 1} draw with P(1) = sigmoid(logits), in the logits' dtype."""
    return jax.random.bernoulli(key, jax.nn.sigmoid(logits.astype(jnp.float32))).astype(logits.dtype)


def gibbs_step(params: Params, v: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One block Gibbs step v -> h ~ p(h | v) -> v' ~ p(v' | h).

    ``v`` ``[B, V]`` -> ``(v' [B, V], p(v' = 1 | h) [B, V])``. Leaves p(v) invariant.
    """
    h_key, v_key = jax.random.split(key)
    h = sample_bernoulli(h_key, hidden_logits(params, v))
    logits = visible_logits(params, h)
    return sample_bernoulli(v_key, logits), jax.nn.sigmoid(logits)


def gibbs_chain(params: Params, v: jax.Array, keys: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``len(keys)`` Gibbs steps from ``v`` ``[B, V]``, one ``lax.scan`` with step ``t`` drawn
    from ``keys[t]``. Returns the last state and its visible probabilities, each ``[B, V]``."""
    if keys.shape[0] < 1:
        raise ValueError("gibbs_chain needs at least one step (one key)")

    def body(carry, key):
        v, _ = carry
        return gibbs_step(params, v, key), None

    v = _like(v, params)
    (v, prob), _ = jax.lax.scan(body, (v, jnp.zeros_like(v)), keys)
    return v, prob


def gibbs_sample(params: Params, key: jax.Array, v0: jax.Array, *, num_steps: int
                 ) -> tuple[jax.Array, jax.Array]:
    """:func:`gibbs_chain` with ``num_steps`` keys split from ``key``: the zoo's sampler
    signature (model, key, start, *, settings; see :mod:`gmzoo.samplers`) with the RBM's
    ``params`` as the model. Returns ``(v [B, V], p(v = 1 | h) [B, V])``."""
    return gibbs_chain(params, v0, jax.random.split(key, num_steps))


# --- contrastive divergence -------------------------------------------------------------------

def reconstruction_error(params: Params, v: jax.Array) -> jax.Array:
    """Mean-field reconstruction error sum_i (v_i - p(v_i = 1 | h = p(h | v)))^2 averaged over
    the batch (Hinton 2010, section 5: a rough training monitor, not a likelihood). -> scalar."""
    h = jax.nn.sigmoid(hidden_logits(params, v))
    recon = jax.nn.sigmoid(visible_logits(params, h))
    return jnp.mean(jnp.sum((v - recon) ** 2, axis=-1))


def free_energy_gap(params: Params, v_data: jax.Array, v_model: jax.Array
                    ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The surrogate mean F(v_data) - mean F(sg(v_model)): its gradient is the CD / PCD
    estimate of the gradient of the mean negative log-likelihood. ``[B, V]``, ``[M, V]`` ->
    ``(scalar, metrics)``."""
    f_data = jnp.mean(free_energy(params, v_data).astype(jnp.float32))
    f_model = jnp.mean(free_energy(params, jax.lax.stop_gradient(v_model)).astype(jnp.float32))
    metrics = {"free_energy_data": f_data, "free_energy_model": f_model,
               "free_energy_gap": f_data - f_model,
               "reconstruction_error": reconstruction_error(
                   jax.lax.stop_gradient(params), v_data).astype(jnp.float32)}
    return f_data - f_model, metrics


def cd_loss(params: Params, batch: dict, key: jax.Array, *, k: int = 1
            ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """CD-k (Hinton 2002): the negative phase from k Gibbs steps started at the data.

    ``batch["image"]`` ``[B, ...]`` binary -> ``(free-energy gap, metrics)``.
    """
    v_data = _like(flatten(batch["image"]), params)
    v_model, _ = gibbs_sample(params, key, v_data, num_steps=k)
    return free_energy_gap(params, v_data, v_model)


def pcd_loss(params: Params, batch: dict, key: jax.Array, *, k: int = 1,
             model_state: dict | None = None) -> Any:
    """PCD-k (Tieleman 2008): the negative phase from persistent chains, k Gibbs steps on.

    ``model_state = {"chains": {"v": [M, V]}}`` -> ``(loss, (metrics, new_model_state))`` with
    the advanced chains (the spine stores them in ``TrainState.model_state``). Without chains
    (held-out evaluation has none) it is :func:`cd_loss` and returns ``(loss, metrics)``.
    """
    if model_state is None:
        return cd_loss(params, batch, key, k=k)
    v_data = _like(flatten(batch["image"]), params)
    chains = model_state["chains"]["v"]  # [M, V]
    v_model, _ = gibbs_sample(params, key, chains, num_steps=k)
    loss, metrics = free_energy_gap(params, v_data, v_model)
    new_state = {**model_state, "chains": {"v": jax.lax.stop_gradient(v_model).astype(chains.dtype)}}
    return loss, (metrics, new_state)


def base_rate_logits(v: ArrayLike, pseudocount: float = 1.0) -> jax.Array:
    """Log-odds of the smoothed marginals (sum_n v_n + a) / (N + 2a) of binary data ``[N, V]``
    -> ``[V]`` (the visible biases of Hinton 2010, section 8, and of AIS's base-rate RBM)."""
    v = flatten(v).astype(jnp.float32)
    p = (jnp.sum(v, axis=0) + pseudocount) / (v.shape[0] + 2.0 * pseudocount)
    return jnp.log(p) - jnp.log1p(-p)
