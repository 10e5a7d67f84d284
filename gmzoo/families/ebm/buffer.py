"""The replay buffer of Langevin chains (Du & Mordatch 2019, section 3.1), as pure functions.

The buffer is an array ``[N, ...]`` of past chain ends kept in the train state (the family's
``"buffer"`` collection, so it is checkpointed and resumed to the bit with the keys of the
steps that use it). Each training step

1. :func:`draw` picks B distinct slots uniformly at random and starts a chain from each slot's
   sample, except a share ``reinit`` of the starts (each independently with probability
   ``reinit``; IGEBM: 5%) drawn afresh from the noise the buffer was filled with, so the
   buffer keeps receiving chains that begin far from the model's modes;
2. runs the chains (:mod:`gmzoo.samplers.langevin`), then
3. :func:`write` puts the B chain ends back into the slots they came from (a reinitialised
   chain replaces the sample whose slot it took: the buffer drops a uniformly random sample for
   each new one, where IGEBM drops the oldest).

Noise is uniform on ``[low, high]`` per coordinate (:func:`uniform_noise`), as in IGEBM.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def uniform_noise(key: jax.Array, shape: tuple[int, ...], low: float, high: float) -> jax.Array:
    """Uniform noise on ``[low, high]`` per coordinate, float32 ``shape``."""
    if not low < high:
        raise ValueError(f"noise range ({low}, {high}) must have low < high")
    return jax.random.uniform(key, shape, jnp.float32, low, high)


def init_buffer(key: jax.Array, size: int, example_shape: tuple[int, ...], low: float,
                high: float) -> jax.Array:
    """A buffer of ``size`` noise samples ``[size, *example_shape]``."""
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"buffer size={size!r} must be an integer >= 1")
    return uniform_noise(key, (size, *example_shape), low, high)


def draw(buffer: jax.Array, key: jax.Array, batch_size: int, *, reinit: float, low: float,
         high: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Chain starts for one step: ``(x0 [B, ...], slots [B] int32, fresh [B] bool)``.

    ``slots`` are B distinct slots of ``buffer [N, ...]`` drawn uniformly; ``x0[i]`` is
    ``buffer[slots[i]]``, or fresh uniform noise on ``[low, high]`` where ``fresh[i]`` (each
    with probability ``reinit``)."""
    n = buffer.shape[0]
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch of {batch_size} chains needs 1 <= B <= buffer size {n}")
    if not 0.0 <= reinit <= 1.0:
        raise ValueError(f"reinit={reinit} must be a share in [0, 1]")
    slot_key, mask_key, noise_key = jax.random.split(key, 3)
    slots = jax.random.choice(slot_key, n, (batch_size,), replace=False).astype(jnp.int32)
    fresh = jax.random.bernoulli(mask_key, reinit, (batch_size,))  # [B]
    noise = uniform_noise(noise_key, (batch_size, *buffer.shape[1:]), low, high)
    keep = fresh.reshape((batch_size,) + (1,) * (buffer.ndim - 1))
    x0 = jnp.where(keep, noise, buffer[slots].astype(jnp.float32))  # [B, ...]
    return x0, slots, fresh


def write(buffer: jax.Array, slots: jax.Array, x: jax.Array) -> jax.Array:
    """``buffer`` with ``x [B, ...]`` in ``slots [B]`` (distinct, from :func:`draw`); no
    gradient flows into the buffer."""
    return buffer.at[slots].set(jax.lax.stop_gradient(x).astype(buffer.dtype))
