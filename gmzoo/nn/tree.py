"""Small helpers on arrays and parameter trees that every family uses: the parameters' dtype
(bfloat16 compute casts a network's floating inputs to it), a precision floor for losses,
broadcasting a per-example scalar against a batch, and parameter counts."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike


def param_dtype(params: Any) -> jnp.dtype:
    """The dtype of a parameter tree (that of its first leaf): float32, or bfloat16 when the
    train step casts the parameters for mixed precision."""
    return jax.tree.leaves(params)[0].dtype


def cast_inputs(params: Any, *inputs: Any) -> list[Any]:
    """``inputs`` with every floating array cast to :func:`param_dtype` ``(params)`` (others,
    e.g. integer labels or ``None``, as they are), so a network runs in the parameters' dtype
    while the loss compares its outputs with the float32 data."""
    dtype = param_dtype(params)
    return [x.astype(dtype) if isinstance(x, jax.Array | np.ndarray)
            and jnp.issubdtype(x.dtype, jnp.floating) else x for x in inputs]


def at_least_f32(x: ArrayLike) -> jax.Array:
    """``x`` as an array of at least float32 precision (bfloat16 / float16 are promoted)."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def expand_like(a: ArrayLike, x: jax.Array) -> jax.Array:
    """``a [B]`` (or a scalar) reshaped to ``[B, 1, ..., 1]`` to broadcast against ``x [B, ...]``."""
    a = jnp.asarray(a)
    return jnp.reshape(a, a.shape + (1,) * (x.ndim - a.ndim))


def param_count(params: Any) -> int:
    """Number of scalars in a parameter pytree (works on ``jax.eval_shape`` output too)."""
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))
