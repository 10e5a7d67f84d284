"""Train steps as pure functions; the caller compiles them (see :mod:`gmzoo.train.parallel`).

``make_train_step`` turns any objective ``loss_fn(params, batch, key) -> (loss, metrics)`` into
``train_step(state, batch, key) -> (state, metrics)``; ``scan_steps`` fuses several steps into one
call with ``lax.scan`` over a stack of batches. Nothing here names a device axis or calls ``pmap``:
data parallelism comes from the shardings the caller gives ``jax.jit``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from gmzoo.train.optim import ema_decay_at
from gmzoo.train.state import TrainState, step_key

Batch = dict[str, jax.Array]
LossFn = Callable[..., tuple[jax.Array, Any]]
PrepareFn = Callable[[Batch, jax.Array], Batch]


def cast_floats(tree: Any, dtype: Any) -> Any:
    """``tree`` with its floating leaves cast to ``dtype`` (other leaves as they are)."""
    return jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x, tree)


def all_finite(tree: Any) -> jax.Array:
    """Whether every entry of every floating leaf of ``tree`` is finite (a bool scalar)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def guard(finite: jax.Array, update: Callable[[Any], Any], state: Any) -> Any:
    """``update(state)`` if ``finite`` else ``state`` unchanged, with ``lax.cond``: one branch
    runs, so a non-finite step costs nothing and leaves the state exactly as it was."""
    return jax.lax.cond(finite, update, lambda s: s, state)


def loss_and_grads(loss_fn: LossFn, params: Any, batch: Batch, key: jax.Array, model_state: Any, *,
                   compute_dtype: Any = jnp.float32, with_model_state: bool = False):
    """The cast forward and backward pass every gmzoo step shares.

    ``loss_fn(params, batch, key) -> (loss, metrics)`` (with ``with_model_state``:
    ``loss_fn(params, batch, key, model_state=...) -> (loss, (metrics, new_model_state))``) is
    evaluated on ``params`` cast to ``compute_dtype`` (only the parameters: the data keep their
    exact values; a bfloat16 cast would move 256-level pixels off their grid) and
    differentiated with respect to ``params``.

    Returns ``(loss, metrics, new_model_state, grads, finite)``: the float32 loss, the metrics
    as float32, the new model state, float32 gradients, and whether the loss and every gradient
    are finite.
    """
    compute_dtype = jnp.dtype(compute_dtype)

    def objective(params):
        if compute_dtype != jnp.float32:
            params = cast_floats(params, compute_dtype)
        if with_model_state:
            loss, (metrics, new_model_state) = loss_fn(params, batch, key, model_state=model_state)
        else:
            (loss, metrics), new_model_state = loss_fn(params, batch, key), model_state
        return loss.astype(jnp.float32), (metrics, new_model_state)

    (loss, (metrics, new_model_state)), grads = jax.value_and_grad(objective, has_aux=True)(params)
    grads = cast_floats(grads, jnp.float32)
    finite = jnp.isfinite(loss) & all_finite(grads)
    metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
    return loss, metrics, new_model_state, grads, finite


def optimizer_update(tx: optax.GradientTransformation, grads: Any, opt_state: Any,
                     params: Any) -> tuple[Any, Any]:
    """``(params, opt_state)`` after one optax update with ``grads``."""
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def ema_update(ema_params: Any, params: Any, ema_decay: float, step: jax.Array) -> Any:
    """The parameter EMA after a step: ``decay * ema + (1 - decay) * params``, with the
    warm-up of :func:`gmzoo.train.optim.ema_decay_at` (``ema_decay = 0``: the params)."""
    decay = ema_decay_at(ema_decay, step)
    return optax.incremental_update(params, ema_params, 1.0 - decay)


def make_train_step(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    *,
    ema_decay: float = 0.999,
    prepare: PrepareFn | None = None,
    compute_dtype: Any = jnp.float32,
    with_model_state: bool = False,
) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
    """Builds ``train_step(state, batch, key) -> (state, metrics)``.

    Args:
      loss_fn: ``loss_fn(params, batch, key) -> (loss, metrics)``; with ``with_model_state``,
        ``loss_fn(params, batch, key, model_state=...) -> (loss, (metrics, new_model_state))``
        (batch statistics, persistent chains, a replay buffer).
      tx: the optax optimizer.
      ema_decay: decay of the parameter EMA (with warm-up, see ``ema_decay_at``); 0 disables it.
      prepare: ``prepare(batch, key) -> batch``: data transforms that need randomness (dynamic
        binarization, dequantization), run inside the compiled step.
      compute_dtype: dtype the parameters are cast to for the forward pass (``jnp.bfloat16``
        for mixed precision); the stored parameters, gradients, optimizer state, the data and
        the loss stay float32.
      with_model_state: see ``loss_fn``.

    The step is :func:`loss_and_grads`, then :func:`optimizer_update` and :func:`ema_update`
    under :func:`guard`: a step whose loss or gradients are not finite leaves params, EMA,
    optimizer and model state as they were (only ``step`` advances) and reports
    ``metrics["finite"] = False``; the loop stops on it.
    """

    def train_step(state: TrainState, batch: Batch, key: jax.Array):
        prep_key, loss_key = jax.random.split(key)
        if prepare is not None:
            batch = prepare(batch, prep_key)
        loss, metrics, model_state, grads, finite = loss_and_grads(
            loss_fn, state.params, batch, loss_key, state.model_state,
            compute_dtype=compute_dtype, with_model_state=with_model_state)

        def apply_update(state: TrainState) -> TrainState:
            params, opt_state = optimizer_update(tx, grads, state.opt_state, state.params)
            return state.replace(params=params, opt_state=opt_state, model_state=model_state,
                                 ema_params=ema_update(state.ema_params, params, ema_decay,
                                                       state.step))

        new_state = guard(finite, apply_update, state).replace(step=state.step + 1)
        metrics.update(loss=loss, grad_norm=optax.tree.norm(grads), finite=finite)
        return new_state, metrics

    return train_step


def scan_steps(train_step: Callable) -> Callable[[TrainState, Batch], tuple[TrainState, Any]]:
    """``run(state, batches) -> (state, metrics)`` over a stack of batches (leading axis K).

    Step ``s`` uses the key ``fold_in(state.key, s)``, so K steps per call give the same
    numbers as K calls of one step, and a resumed run continues the same key sequence.
    Metrics come back stacked, ``[K]`` per entry. The scan is unrolled (compile time grows with
    K; on CPU a rolled loop keeps convolutions off XLA's fast kernels).
    """

    def run(state: TrainState, batches: Batch):
        def body(state, batch):
            return train_step(state, batch, step_key(state))

        if jax.tree.leaves(batches)[0].shape[0] == 1:
            # One step: no loop. (XLA:CPU leaves the convolutions of a scan body in a layout
            # its fast conv kernels do not take: a conv VAE step ran 12x slower inside a scan.)
            state, metrics = body(state, jax.tree.map(lambda b: b[0], batches))
            return state, jax.tree.map(lambda m: m[None], metrics)
        return jax.lax.scan(body, state, batches, unroll=True)

    return run
