"""The one train-state pytree every family trains with (after VDM's ``train_state.py``)."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training; static ``apply_fn`` / ``tx`` are not leaves.

    Attributes:
      step: int32 scalar, number of updates applied.
      params: the trained parameters (float32).
      ema_params: exponential moving average of ``params``; sampling and evaluation read these.
      opt_state: the optax optimizer state.
      model_state: other Flax collections (e.g. ``{"batch_stats": ...}``), ``{}`` if none.
      key: the run's base PRNG key (typed); step ``s`` uses ``fold_in(key, s)``.
    """

    step: jax.Array
    params: Any
    ema_params: Any
    opt_state: Any
    model_state: Any
    key: jax.Array

    @classmethod
    def create(cls, *, params: Any, tx: optax.GradientTransformation, key: jax.Array,
               model_state: Any = None) -> "TrainState":
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=jax.tree.map(jnp.copy, params),  # a donated step must not free the caller's
            ema_params=jax.tree.map(jnp.copy, params),
            opt_state=tx.init(params),
            model_state={} if model_state is None else model_state,
            key=key,
        )


def step_key(state: TrainState) -> jax.Array:
    """The key of the step about to be taken: ``fold_in(base_key, step)``."""
    return jax.random.fold_in(state.key, state.step)
