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


def _cast_floats(tree: Any, dtype: Any) -> Any:
    return jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x, tree)


def _all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


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
        (e.g. batch statistics).
      tx: the optax optimizer.
      ema_decay: decay of the parameter EMA (with warm-up, see ``ema_decay_at``); 0 disables it.
      prepare: ``prepare(batch, key) -> batch``: data transforms that need randomness (dynamic
        binarization, dequantization), run inside the compiled step.
      compute_dtype: dtype the parameters are cast to for the forward pass (``jnp.bfloat16``
        for mixed precision); the stored parameters, gradients, optimizer state, the data and
        the loss stay float32.
      with_model_state: see ``loss_fn``.

    A step whose loss or gradients are not finite leaves params, EMA, optimizer and model state
    as they were (only ``step`` advances) and reports ``metrics["finite"] = False``; the loop
    stops on it.
    """
    compute_dtype = jnp.dtype(compute_dtype)

    def objective(params, batch, key, model_state):
        if compute_dtype != jnp.float32:
            # Only the parameters: the data keep their exact values (a bfloat16 cast would move
            # 256-level pixels off their grid); apply functions cast a module's inputs.
            params = _cast_floats(params, compute_dtype)
        if with_model_state:
            loss, (metrics, new_model_state) = loss_fn(params, batch, key, model_state=model_state)
        else:
            (loss, metrics), new_model_state = loss_fn(params, batch, key), model_state
        return loss.astype(jnp.float32), (metrics, new_model_state)

    def train_step(state: TrainState, batch: Batch, key: jax.Array):
        prep_key, loss_key = jax.random.split(key)
        if prepare is not None:
            batch = prepare(batch, prep_key)
        (loss, (metrics, model_state)), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params, batch, loss_key, state.model_state)
        grads = _cast_floats(grads, jnp.float32)
        finite = jnp.isfinite(loss) & _all_finite(grads)

        def apply_update(state: TrainState) -> TrainState:
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            decay = ema_decay_at(ema_decay, state.step)
            ema_params = optax.incremental_update(params, state.ema_params, 1.0 - decay)
            return state.replace(params=params, ema_params=ema_params, opt_state=opt_state,
                                 model_state=model_state)

        # One branch runs: a non-finite step costs nothing and leaves the state as it was.
        new_state = jax.lax.cond(finite, apply_update, lambda s: s, state)
        new_state = new_state.replace(step=state.step + 1)
        metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
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
