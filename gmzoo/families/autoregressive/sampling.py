"""The family's generic sampler and sequential likelihood: the whole network re-run for every
dimension, for any network that keeps the contract of :mod:`gmzoo.families.autoregressive`.

- :func:`naive_sample` draws x ~ prod_d p_T(x_{o(d)} | x_{o(<d)}) one dimension at a time: at
  step d it runs ``apply_fn`` on the current x, takes the raw parameters of dimension o(d) and
  draws it with ``keys[d]`` (``keys = jax.random.split(key, D)``). D network passes of O(net)
  each; the cached samplers (NADE's carried pre-activations, key-value caches, activation
  queues) give the same samples under the same key and are checked against this one.
- :func:`decode_sample` and :func:`decode_raw` are the same scan for a network with a
  one-position ``decode`` step and a cache (the transformer's keys and values, WaveNet's
  activation queues): raster order, x_{d-1} in, raw_d out, O(1) network work per step.
- :func:`sequential_log_prob` sums log p(x_{o(d)} | x_{o(<d)}) computed one dimension at a
  time, the network run at step d on x with every dimension at or after o(d) in the ordering
  set to zero. For an autoregressive network it equals the parallel (teacher-forced) log p(x)
  = sum_d log p(x_d | raw_d(x)); for a network that peeks at later dimensions it does not, which
  is what the tests use it for.

Both are one ``jax.lax.scan`` over d with the dimension index (and key) as scan inputs; neither
jits (the caller does).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gmzoo.families.autoregressive import outputs

ApplyFn = Callable[[jax.Array], jax.Array]  # x [B, *event] -> raw [B, *event, P]
# One step of a cached network: (x_{d-1} [B], d, cache) -> (raw_d [B, P], cache)
DecodeFn = Callable[[jax.Array, jax.Array, Any], tuple[jax.Array, Any]]
DrawFn = Callable[[jax.Array, jax.Array, float], jax.Array]  # (key, raw_d [B, P], T) -> [B]
LogProbFn = Callable[[jax.Array, jax.Array], jax.Array]  # (raw [..., P], x [...]) -> [...]


def order_error(order, num_dims: int) -> str | None:
    """Why ``order`` is not an ordering of ``num_dims`` dimensions (a permutation of
    0..D-1), or None. A traced ``order`` is not checked."""
    if isinstance(order, jax.core.Tracer):
        return None
    o = np.asarray(order)
    if o.ndim != 1 or o.shape[0] != num_dims:
        return (f"the ordering has shape {tuple(o.shape)}; it must list each of the "
                f"{num_dims} dimensions once (shape ({num_dims},))")
    if not np.issubdtype(o.dtype, np.integer) or not np.array_equal(np.sort(o),
                                                                     np.arange(num_dims)):
        return f"the ordering must be a permutation of 0..{num_dims - 1}, got {o.tolist()}"
    return None


def _order(x_init: jax.Array, order) -> jax.Array:
    if x_init.ndim < 2:
        raise ValueError(f"x_init has shape {tuple(x_init.shape)}; it must be [B, *event]")
    num_dims = math.prod(x_init.shape[1:])
    if order is None:
        return jnp.arange(num_dims, dtype=jnp.int32)
    why = order_error(order, num_dims)
    if why is not None:
        raise ValueError(why)
    return jnp.asarray(order, jnp.int32)


def check_sampler_inputs(x_init: ArrayLike, temperature, order=None) -> None:
    """Refuses in one line (ValueError) what no sampler of the family can use: an ``x_init``
    without a batch axis, a temperature that is not a finite number > 0, an ordering that is not
    a permutation of the D dimensions. Traced values are not checked."""
    if not isinstance(temperature, jax.core.Tracer):
        if isinstance(temperature, (jax.Array, np.ndarray, np.generic)):
            temperature = float(temperature) if np.size(temperature) == 1 else temperature
        why = outputs.check_temperature(temperature)
        if why is not None:
            raise ValueError(why)
    _order(jnp.asarray(x_init), order)


def naive_sample(apply_fn: ApplyFn, key: jax.Array, x_init: ArrayLike, *, draw: DrawFn,
                 temperature: float, order: ArrayLike | None = None) -> jax.Array:
    """x ~ prod_d p_T(x_{o(d)} | x_{o(<d)}), the network re-run for every dimension.

    ``apply_fn(x [B, *event]) -> raw [B, *event, P]`` (params and label bound), ``x_init
    [B, *event]`` (zeros: its shape and dtype; every dimension is overwritten), ``draw(key,
    raw_d [B, P], temperature) -> [B]``, ``order [D]`` the flat dimension drawn at each step
    (raster ``0..D-1`` if None). Step d draws dimension ``order[d]`` with
    ``jax.random.split(key, D)[d]``. Returns x ``[B, *event]``."""
    check_sampler_inputs(x_init, temperature, order)
    x_init = jnp.asarray(x_init)
    order = _order(x_init, order)
    shape = x_init.shape
    batch, num_dims = shape[0], math.prod(shape[1:])
    keys = jax.random.split(key, num_dims)

    def step(x, inputs):  # x [B, D]
        d, k = inputs
        raw = apply_fn(x.reshape(shape))  # [B, *event, P]
        raw = raw.reshape(batch, num_dims, -1)  # [B, D, P]
        raw_d = jax.lax.dynamic_index_in_dim(raw, d, axis=1, keepdims=False)  # [B, P]
        value = draw(k, raw_d, temperature)  # [B]
        return x.at[:, d].set(value.astype(x.dtype)), None

    x, _ = jax.lax.scan(step, x_init.reshape(batch, num_dims), (order, keys))
    return jax.lax.stop_gradient(x.reshape(shape))


def decode_sample(decode: DecodeFn, cache: Any, key: jax.Array, x_init: ArrayLike, *,
                  draw: DrawFn, temperature: float) -> jax.Array:
    """x ~ prod_d p_T(x_d | x_<d) in raster order through a cached one-position step: one
    ``lax.scan`` over d = 0..D-1, step d running ``decode(x_{d-1} [B], d, cache) -> (raw_d [B,
    P], cache)`` (x_{-1} = 0) and drawing dimension d with ``jax.random.split(key, D)[d]``, as
    :func:`naive_sample` does, whose samples it equals under the same key when ``decode``
    computes what the full network does. ``cache`` is the empty cache for B examples. Returns x
    ``[B, *event]`` (the shape of ``x_init``)."""
    check_sampler_inputs(x_init, temperature)
    x_init = jnp.asarray(x_init, jnp.float32)
    batch, num_dims = x_init.shape[0], math.prod(x_init.shape[1:])

    def step(carry, inputs):
        cache, prev = carry  # cache, [B]
        d, k = inputs
        raw, cache = decode(prev, d, cache)  # [B, P]
        value = draw(k, raw, temperature).astype(jnp.float32)  # [B]
        return (cache, value), value

    carry = (cache, jnp.zeros((batch,), jnp.float32))
    _, values = jax.lax.scan(step, carry, (jnp.arange(num_dims),
                                           jax.random.split(key, num_dims)))  # [D, B]
    return jax.lax.stop_gradient(values.T.reshape(x_init.shape))


def decode_raw(decode: DecodeFn, cache: Any, x: ArrayLike) -> jax.Array:
    """Teacher-forced decoding of a given ``x [B, *event]`` through the cached step: raw ``[B,
    *event, P]`` of every position, one ``lax.scan`` fed x_{d-1}. Equals the full network's
    raw(x) to float tolerance when ``decode`` is right (what the cache tests check)."""
    x = jnp.asarray(x, jnp.float32)
    batch = x.shape[0]
    flat = x.reshape(batch, -1)  # [B, D]
    prevs = jnp.concatenate([jnp.zeros((batch, 1), flat.dtype), flat[:, :-1]], axis=1).T

    def step(cache, inputs):
        d, prev = inputs
        raw, cache = decode(prev, d, cache)
        return cache, raw

    _, raws = jax.lax.scan(step, cache, (jnp.arange(flat.shape[1]), prevs))  # [D, B, P]
    raws = jnp.moveaxis(raws, 0, 1)
    return raws.reshape(*x.shape, raws.shape[-1])  # [B, *event, P]


def sequential_log_prob(apply_fn: ApplyFn, x: ArrayLike, log_prob_fn: LogProbFn,
                        order: ArrayLike | None = None) -> jax.Array:
    """sum_d log p(x_{o(d)} | x_{o(<d)}) with term d computed from ``apply_fn`` run on x with
    the dimensions o(d), o(d+1), ... set to zero: ``[B]``.

    ``log_prob_fn(raw [..., P], x [...]) -> [...]`` the per-dimension log-likelihood (e.g.
    ``functools.partial(outputs.log_prob, "bernoulli", num_levels=2)``), ``order [D]`` as for
    :func:`naive_sample`. Equal to the parallel sum_d log_prob_fn(raw(x), x) (to float
    rounding) when the network is autoregressive in ``order``, and in general only then."""
    x = jnp.asarray(x)
    order = _order(x, order)
    shape = x.shape
    batch, num_dims = shape[0], math.prod(shape[1:])
    flat = x.reshape(batch, num_dims)  # [B, D]
    rank = jnp.zeros((num_dims,), jnp.int32).at[order].set(jnp.arange(num_dims))  # o^{-1}

    def step(total, d):
        visible = (rank < d).astype(flat.dtype)  # [D]: the first d dimensions of the order
        raw = apply_fn((flat * visible).reshape(shape)).reshape(batch, num_dims, -1)  # [B, D, P]
        take = lambda a: jax.lax.dynamic_index_in_dim(a, order[d], axis=1, keepdims=False)
        term = log_prob_fn(take(raw), take(flat))  # [B]
        return total + term, None

    total, _ = jax.lax.scan(step, jnp.zeros((batch,), jnp.float32),
                            jnp.arange(num_dims, dtype=jnp.int32))
    return total
