"""The contrastive-divergence objective of an energy-based model p(x) ~ exp(-E_theta(x)).

The gradient of the negative log-likelihood is

    grad_theta -log p(x+) = grad_theta E(x+) - E_{x- ~ p}[grad_theta E(x-)],

so with negatives x- from a Langevin chain on the current energy (Hinton 2002; Du & Mordatch
2019, eq. 2) the objective minimised is

    L = mean E(x+) - mean E(sg(x-)) + alpha (mean E(x+)^2 + mean E(sg(x-))^2),

sg = stop_gradient: the chain is data for the objective, run with the parameters under
stop_gradient, and no gradient flows through its steps. The second term (IGEBM's energy
regulariser, alpha = 1 there, 0.1 in the UvA tutorial) keeps the energies from drifting to
large magnitudes, which the first term alone leaves free (it is invariant to a constant shift
and rewards a widening gap) [wgrathwohl/JEM#4, #8].

The negatives start from the replay buffer (:mod:`gmzoo.families.ebm.buffer`) kept in the
train state's ``model_state = {"buffer": {"x": [N, ...]}}``; the chain ends go back into it,
and the objective returns ``(loss, (metrics, new_model_state))``, the spine's convention for a
loss with model state. Without a buffer (``model_state=None``: held-out evaluation) the chains
start from fresh noise and it returns ``(loss, metrics)``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from gmzoo.families.ebm import buffer as replay

ApplyFn = Callable[[Any, jax.Array], jax.Array]  # (params, x [B, ...]) -> E [B]
ChainFn = Callable[[Callable, jax.Array, jax.Array], jax.Array]  # (energy_fn, key, x0) -> x


def cd_objective(e_pos: jax.Array, e_neg: jax.Array, alpha: float) -> tuple[jax.Array, dict]:
    """mean E(x+) - mean E(x-) + alpha (mean E(x+)^2 + mean E(x-)^2) of energies ``[B]``,
    with its parts as metrics."""
    e_pos, e_neg = e_pos.astype(jnp.float32), e_neg.astype(jnp.float32)
    gap = jnp.mean(e_pos) - jnp.mean(e_neg)
    penalty = jnp.mean(jnp.square(e_pos)) + jnp.mean(jnp.square(e_neg))
    metrics = {"energy_data": jnp.mean(e_pos), "energy_negatives": jnp.mean(e_neg),
               "cd_gap": gap, "energy_penalty": penalty}
    return gap + alpha * penalty, metrics


def contrastive_divergence(params: Any, batch: dict, key: jax.Array, *, apply_fn: ApplyFn,
                           chain: ChainFn, alpha: float, reinit: float,
                           noise_range: tuple[float, float], model_state: dict | None = None):
    """The CD objective above on ``batch["image"] [B, ...]`` (x+), with B negatives from
    ``chain(energy_fn, key, x0)`` (a Langevin sampler of :mod:`gmzoo.samplers.langevin`
    with its settings bound).

    With ``model_state = {"buffer": {"x": [N, ...]}}`` the starts are B buffer samples, a share
    ``reinit`` replaced by uniform noise on ``noise_range`` (:func:`~gmzoo.families.ebm.buffer.
    draw`), and the chain ends are written back: returns ``(loss, (metrics, new_model_state))``.
    Without it (held-out evaluation) every start is noise: returns ``(loss, metrics)``.
    """
    x_pos = batch["image"]  # [B, ...]
    b = x_pos.shape[0]
    low, high = noise_range
    start_key, chain_key = jax.random.split(key)
    if model_state is None:
        x0 = replay.uniform_noise(start_key, x_pos.shape, low, high)  # [B, ...]
    else:
        x0, slots, fresh = replay.draw(model_state["buffer"]["x"], start_key, b, reinit=reinit,
                                       low=low, high=high)
    frozen = jax.lax.stop_gradient(params)
    x_neg = jax.lax.stop_gradient(chain(lambda x: apply_fn(frozen, x), chain_key, x0))
    x_neg = x_neg.astype(x_pos.dtype)
    loss, metrics = cd_objective(apply_fn(params, x_pos), apply_fn(params, x_neg), alpha)
    if model_state is None:
        return loss, metrics
    metrics["reinit_share"] = jnp.mean(fresh.astype(jnp.float32))
    new_state = {**model_state, "buffer": {**model_state["buffer"],
                                           "x": replay.write(model_state["buffer"]["x"], slots, x_neg)}}
    return loss, (metrics, new_state)
