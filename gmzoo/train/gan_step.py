"""The GAN train step: the spine's train step with two players (Goodfellow et al. 2014, Alg. 1).

``make_gan_train_step`` builds ``train_step(state, batch, key) -> (state, metrics)``, the shape of
:func:`gmzoo.train.step.make_train_step`, on the same ``TrainState``, so ``scan_steps``, the loop
and checkpointing run it unchanged. The players are the top-level entries of the state's trees:

    state.params       {"generator": g, "discriminator": d}
    state.opt_state    {"generator": tx_g state, "discriminator": tx_d state}   (``players_tx``)
    state.ema_params   {"generator": EMA of g, "discriminator": d (a copy, no average)}
    state.model_state  {} or {"generator": {...}, "discriminator": {...}}   (e.g. batch stats)

so ``TrainState.create(params=..., tx=players_tx(tx_g, tx_d), key=...)`` builds the state.

One step, in this order, inside one compiled function:

1. ``prep_key, d_key, g_key = jax.random.split(key, 3)``; ``batch = prepare(batch, prep_key)``.
2. k = ``d_steps`` discriminator updates with ``d_keys = jax.random.split(d_key, k)``: update i
   is ``tx_d`` on ``grad_d d_loss_fn(d, g, batch, d_keys[i])``. g is the generator as it was at
   the start of the step: gradients are taken only w.r.t. the first argument, so the other
   player is frozen by construction, and ``tx_g``'s state is not touched.
   All k updates see the same real batch and fresh noise from their own key (Algorithm 1 draws
   a new real minibatch per update; one batch per step keeps the data pipeline, the loop and
   ``scan_steps`` as they are, and WGAN's k = 5 critic steps would otherwise need 5x the data
   per step). With ``split_batch=True`` update i sees instead the strided chunk
   ``batch[i::k]`` (B must be a multiple of k; strided, so that a batch sharded over devices
   along B gives every chunk rows on every device).
3. One generator update, ``tx_g`` on ``grad_g g_loss_fn(g, d', batch, g_key)`` against the
   updated discriminator d' (d frozen), on the whole batch; then the generator's EMA with the
   spine's warm-up ``ema_decay_at(ema_decay, step)``. ``ema_params["discriminator"]`` is d'.
4. ``step += 1`` (one step = one generator update, whatever k).

The k updates are a ``lax.scan`` with ``unroll=True`` (the body is traced once; a rolled scan
body keeps a conv discriminator off XLA:CPU's fast convolution kernels, see ``scan_steps``); for
k = 1 the update is called directly, with no scan at all, because even a length-1 unrolled scan
left 8 of a DCGAN step's convolutions in slow layouts (the step ran 3-8x slower).

Batch statistics (``with_model_state``): both loss functions get the whole
``model_state={"generator": ..., "discriminator": ...}`` and return a whole new one, but each
phase keeps only its own player's entry: the D updates keep ``new["discriminator"]`` (threaded
through the k updates), the G update keeps ``new["generator"]``; other entries pass through.
Whether a network *normalises* with batch statistics (train mode) or with its running averages
is the loss function's choice and is independent of which running averages are kept. DCGAN runs
both networks in train mode in both phases (the fakes that D sees in its update are normalised
with their own batch statistics, as in the G update); under this rule G's running averages are
updated once per step (by its own update) and D's once per D update, so a player's running
averages, like its parameters, only change during its own update and a reverted update reverts
them too. A player with no entry (e.g. an unnormalised critic) has nothing kept.

Each player's update is guarded like the spine's step: if any of the k D losses or gradients is
not finite, D's params, optimizer state and batch statistics stay as they were at the start of
the step (G then plays against that D); if G's loss or gradient is not finite, G's params, EMA,
optimizer state and batch statistics stay. ``metrics["finite"]`` is both, ``d_finite`` and
``g_finite`` say which player failed; the loop stops on ``finite = False``.

Metrics: the D loss function's metrics of the last D update prefixed ``d_``, the G loss
function's prefixed ``g_``, ``d_loss``, ``d_grad_norm`` (last D update), ``g_loss``,
``g_grad_norm``, ``finite``, ``d_finite``, ``g_finite``, and ``loss = g_loss`` (the loop logs
``loss``).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from gmzoo.train.state import TrainState
from gmzoo.train.step import (Batch, PrepareFn, cast_floats, ema_update, guard, loss_and_grads,
                              optimizer_update)

GENERATOR = "generator"
DISCRIMINATOR = "discriminator"
PLAYERS = (GENERATOR, DISCRIMINATOR)

# d_loss_fn(d_params, g_params, batch, key) -> (loss, metrics);
# g_loss_fn(g_params, d_params, batch, key) -> (loss, metrics). With model state, both also take
# model_state=... and return (loss, (metrics, new_model_state)).
PlayerLossFn = Callable[..., tuple[jax.Array, Any]]


def _check_players(tree: Any, what: str) -> None:
    if not isinstance(tree, dict) or set(tree) != set(PLAYERS):
        got = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
        raise ValueError(f"a GAN's {what} must be a dict with exactly the keys "
                         f"{list(PLAYERS)} (one entry per player), got {got}")


def players_tx(tx_g: optax.GradientTransformation,
               tx_d: optax.GradientTransformation) -> optax.GradientTransformation:
    """One optax transformation over ``{"generator": ..., "discriminator": ...}`` trees that
    applies ``tx_g`` to the generator entry and ``tx_d`` to the discriminator entry, with the
    state ``{"generator": tx_g state, "discriminator": tx_d state}``."""
    txs = {GENERATOR: tx_g, DISCRIMINATOR: tx_d}

    def init(params):
        _check_players(params, "params")
        return {p: txs[p].init(params[p]) for p in PLAYERS}

    def update(updates, state, params=None):
        _check_players(updates, "updates")
        out = {p: txs[p].update(updates[p], state[p], None if params is None else params[p])
               for p in PLAYERS}
        return {p: out[p][0] for p in PLAYERS}, {p: out[p][1] for p in PLAYERS}

    return optax.GradientTransformation(init, update)


def _keep(model_state: Any, new_model_state: Any, player: str) -> Any:
    """``model_state`` with ``player``'s entry taken from ``new_model_state`` (if it has one)."""
    if not isinstance(model_state, dict) or player not in model_state:
        return model_state
    return {**model_state, player: new_model_state[player]}


def _where(pred: jax.Array, new: Any, old: Any) -> Any:
    """``new`` if ``pred`` else ``old``, leaf by leaf (both already computed: a select)."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def _strided_chunks(batch: Batch, k: int) -> Batch:
    """``[B, ...] -> [k, B // k, ...]`` with chunk i = ``batch[i::k]``."""
    def chunk(x):
        if x.ndim < 1 or x.shape[0] % k:
            raise ValueError(f"split_batch=True splits the batch into d_steps={k} chunks: every "
                             f"batch entry needs a leading size divisible by {k}, got {x.shape}")
        return jnp.swapaxes(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 0, 1)
    return jax.tree.map(chunk, batch)


def make_gan_train_step(
    d_loss_fn: PlayerLossFn,
    g_loss_fn: PlayerLossFn,
    tx_g: optax.GradientTransformation,
    tx_d: optax.GradientTransformation,
    *,
    d_steps: int = 1,
    ema_decay: float = 0.999,
    prepare: PrepareFn | None = None,
    compute_dtype: Any = jnp.float32,
    with_model_state: bool = False,
    split_batch: bool = False,
) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
    """Builds the two-player ``train_step(state, batch, key) -> (state, metrics)`` (see the
    module docstring for the order of updates, the keys, batch statistics and the guard).

    Args:
      d_loss_fn: ``d_loss_fn(d_params, g_params, batch, key) -> (loss, metrics)``, minimised by
        the discriminator; with ``with_model_state``, also ``model_state=`` (the whole dict) and
        returns ``(loss, (metrics, new_model_state))``.
      g_loss_fn: ``g_loss_fn(g_params, d_params, batch, key) -> (loss, metrics)``, minimised by
        the generator; same ``with_model_state`` convention.
      tx_g, tx_d: each player's optax optimizer (the state is built with
        ``players_tx(tx_g, tx_d)``).
      d_steps: k, discriminator updates per generator update (WGAN: 5).
      ema_decay: decay of the generator's EMA (warm-up as ``ema_decay_at``); 0 disables it.
      prepare: ``prepare(batch, key) -> batch``, run once per step before both players.
      compute_dtype: dtype both players' parameters are cast to for the forward passes; stored
        parameters, gradients and optimizer states stay float32.
      with_model_state: see ``d_loss_fn``.
      split_batch: D update i sees ``batch[i::k]`` instead of the whole batch.
    """
    if not isinstance(d_steps, int) or isinstance(d_steps, bool) or d_steps < 1:
        raise ValueError(f"d_steps must be a positive int (discriminator updates per generator "
                         f"update), got {d_steps!r}")
    def grads_of(loss_fn, mine, other, batch, key, model_state):
        """:func:`~gmzoo.train.step.loss_and_grads` of ``loss_fn`` w.r.t. the updating
        player's params ``mine``; the other player's are a constant (cast like ``mine``)."""
        if jnp.dtype(compute_dtype) != jnp.float32:
            other = cast_floats(other, compute_dtype)
        player_loss = lambda p, b, k, **kw: loss_fn(p, other, b, k, **kw)
        return loss_and_grads(player_loss, mine, batch, key, model_state,
                              compute_dtype=compute_dtype, with_model_state=with_model_state)

    def train_step(state: TrainState, batch: Batch, key: jax.Array):
        _check_players(state.params, "params")
        _check_players(state.opt_state, "opt_state (build the state with players_tx)")
        prep_key, d_key, g_key = jax.random.split(key, 3)
        if prepare is not None:
            batch = prepare(batch, prep_key)
        g0, d0 = state.params[GENERATOR], state.params[DISCRIMINATOR]

        # ---- k discriminator updates; the generator g0 is a constant throughout -------------
        def d_update(carry, xs):
            d, d_opt, model_state = carry
            d_batch, d_key_i = xs
            if d_batch is None:  # the same batch each time: a scan constant, not an input
                d_batch = batch
            loss, metrics, new_ms, grads, finite = grads_of(
                d_loss_fn, d, g0, d_batch, d_key_i, model_state)
            d, d_opt = optimizer_update(tx_d, grads, d_opt, d)
            carry = (d, d_opt, _keep(model_state, new_ms, DISCRIMINATOR))
            return carry, (loss, metrics, optax.tree.norm(grads), finite)

        xs = (_strided_chunks(batch, d_steps) if split_batch else None,
              jax.random.split(d_key, d_steps))
        start = (d0, state.opt_state[DISCRIMINATOR], state.model_state)
        if d_steps == 1:
            # One update: no loop. XLA:CPU leaves the convolutions of even a length-1 scan in
            # layouts its fast kernels do not take (a DCGAN step ran 3-8x slower; see
            # ``scan_steps``, which does the same for one train step).
            end, ys = d_update(start, jax.tree.map(lambda x: x[0], xs))
            d_losses, d_metrics, d_norms, d_finites = jax.tree.map(lambda y: y[None], ys)
        else:
            end, (d_losses, d_metrics, d_norms, d_finites) = jax.lax.scan(
                d_update, start, xs, unroll=True)
        d_finite = jnp.all(d_finites)
        # All or nothing: a non-finite update among the k reverts D to the start of the step.
        d, d_opt, model_state = _where(d_finite, end, start)

        # ---- one generator update against the updated discriminator d -----------------------
        g_loss, g_metrics, new_ms, g_grads, g_finite = grads_of(
            g_loss_fn, g0, d, batch, g_key, model_state)

        def apply_g(args):
            g, g_opt, g_ema, model_state = args
            g, g_opt = optimizer_update(tx_g, g_grads, g_opt, g)
            g_ema = ema_update(g_ema, g, ema_decay, state.step)
            return g, g_opt, g_ema, _keep(model_state, new_ms, GENERATOR)

        # One branch runs: a non-finite generator update costs nothing and changes nothing.
        g, g_opt, g_ema, model_state = guard(
            g_finite, apply_g,
            (g0, state.opt_state[GENERATOR], state.ema_params[GENERATOR], model_state))

        new_state = state.replace(
            step=state.step + 1,
            params={GENERATOR: g, DISCRIMINATOR: d},
            ema_params={GENERATOR: g_ema, DISCRIMINATOR: d},
            opt_state={GENERATOR: g_opt, DISCRIMINATOR: d_opt},
            model_state=model_state,
        )
        metrics = {f"d_{k}": v[-1] for k, v in d_metrics.items()}
        metrics.update({f"g_{k}": v for k, v in g_metrics.items()})
        metrics.update(d_loss=d_losses[-1], d_grad_norm=d_norms[-1], g_loss=g_loss,
                       g_grad_norm=optax.tree.norm(g_grads), d_finite=d_finite,
                       g_finite=g_finite, finite=d_finite & g_finite, loss=g_loss)
        return new_state, metrics

    return train_step
