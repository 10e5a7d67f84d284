"""k-means++ seeding, Lloyd's k-means and the Gaussian-mixture initialisation built on them.

- :func:`kmeans_plusplus` (Arthur & Vassilvitskii 2007): the first centre uniformly among the
  points, each next one with probability proportional to D(x)^2, the squared distance to the
  nearest centre chosen so far. With ``num_trials > 1`` it is scikit-learn's *greedy* variant
  (``sklearn.cluster.kmeans_plusplus``): draw that many candidates from D^2 and keep the one
  that lowers the potential sum_x D(x)^2 most (default 2 + floor(log K), as scikit-learn).
- :func:`lloyd`: ``num_steps`` Lloyd iterations (assign each point to its nearest centre, move
  each centre to its points' mean; an empty cluster keeps its centre), one ``lax.scan``.
- :func:`init_params`: seeds, Lloyd steps, then the mixture's moments from the hard assignment
  (scikit-learn's ``init_params="kmeans"`` / ``"k-means++"``: responsibilities one-hot on the
  nearest centre, then one M-step), so a component starts with its cluster's weight, mean and
  covariance (+ ``reg_covar``).

All are pure functions of ``(key, x [N, D])``, jitted with K static.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gmzoo.families.gmm import em


def default_trials(k: int) -> int:
    """scikit-learn's number of local trials of greedy k-means++: 2 + floor(log K)."""
    return 2 + int(math.log(k))


def _squared_distances(x: jax.Array, centres: jax.Array) -> jax.Array:
    """|x_b - c_j|^2 [B, J], computed from the differences (exact zeros at the centres)."""
    return jnp.sum(jnp.square(x[:, None, :] - centres[None]), axis=-1)


@functools.partial(jax.jit, static_argnames=("k", "num_trials"))
def kmeans_plusplus(key: jax.Array, x: ArrayLike, k: int,
                    num_trials: int = 0) -> tuple[jax.Array, jax.Array]:
    """k-means++ seeds: ``(centres [K, D], indices [K])`` of ``x`` [N, D] (see the module
    docstring); ``num_trials`` 0 means :func:`default_trials`, 1 the plain algorithm."""
    x = jnp.asarray(x)
    n = x.shape[0]
    if k > n:
        raise ValueError(f"k-means++ needs at least k={k} points, got {n}")
    trials = num_trials or default_trials(k)
    first_key, loop_key = jax.random.split(key)
    first = jax.random.randint(first_key, (), 0, n, dtype=jnp.int32)
    closest = _squared_distances(x, x[first][None])[:, 0]  # [N]  D(x)^2
    indices = jnp.zeros((k,), jnp.int32).at[0].set(first)

    def body(j, carry):
        indices, closest = carry
        total = jnp.sum(closest)
        # D^2 sampling; if every point already is a centre (duplicates), uniformly.
        logits = jnp.where(total > 0, jnp.log(closest), 0.0)  # [N] (-inf at chosen points)
        cand = jax.random.categorical(jax.random.fold_in(loop_key, j), logits,
                                      shape=(trials,)).astype(jnp.int32)
        dist = jnp.minimum(closest[None], _squared_distances(x, x[cand]).T)  # [T, N]
        best = jnp.argmin(jnp.sum(dist, axis=1))  # the candidate with the lowest potential
        return indices.at[j].set(cand[best]), dist[best]

    indices, _ = jax.lax.fori_loop(1, k, body, (indices, closest))
    return x[indices], indices


def assign(x: jax.Array, centres: jax.Array) -> jax.Array:
    """Index of the nearest centre of each point: [N] int32."""
    return jnp.argmin(_squared_distances(x, centres), axis=1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("num_steps",))
def lloyd(x: ArrayLike, centres: ArrayLike, num_steps: int) -> jax.Array:
    """``num_steps`` Lloyd iterations from ``centres`` [K, D]: the new centres [K, D]."""
    x, centres = jnp.asarray(x), jnp.asarray(centres)
    k = centres.shape[0]

    def body(c, _):
        onehot = jax.nn.one_hot(assign(x, c), k, dtype=x.dtype)  # [N, K]
        count = jnp.sum(onehot, axis=0)  # [K]
        moved = (onehot.T @ x) / jnp.maximum(count, 1.0)[:, None]
        return jnp.where(count[:, None] > 0, moved, c), None

    return jax.lax.scan(body, centres, None, length=num_steps)[0]


@functools.partial(jax.jit, static_argnames=("k", "covariance_type", "num_steps", "num_trials"))
def init_params(key: jax.Array, x: ArrayLike, k: int, covariance_type: str, *,
                reg_covar: float = 1e-6, num_steps: int = 10,
                num_trials: int = 0) -> em.Params:
    """Initial mixture parameters for EM on x [N, D]: k-means++ seeds, ``num_steps`` Lloyd
    steps, then weights, means and covariances of the clusters (one M-step on one-hot
    responsibilities)."""
    x = jnp.asarray(x)
    centres, _ = kmeans_plusplus(key, x, k, num_trials)
    centres = lloyd(x, centres, num_steps)
    resp = jax.nn.one_hot(assign(x, centres), k, dtype=x.dtype)  # [N, K]
    # the moments about the cluster centres (full), or about their mean (other types)
    shift = centres if covariance_type == "full" else jnp.broadcast_to(jnp.mean(x, 0), centres.shape)
    stats = em.statistics_from_responsibilities(resp, x, shift, covariance_type)
    return em.m_step(stats, covariance_type, reg_covar)
