"""The pure train step: updates, EMA, scan fusion, non-finite guard, model state, bf16, tracing."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gmzoo.train.state import TrainState, step_key
from gmzoo.train.step import make_train_step, scan_steps


def _regression(params, batch, key):
    noise = 0.01 * jax.random.normal(key, batch["y"].shape)
    pred = batch["x"] @ params["w"] + params["b"]
    loss = jnp.mean((pred - batch["y"] - noise) ** 2)
    return loss, {"mse": loss}


def _data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5], np.float32) + 0.3
    return {"x": jnp.asarray(x), "y": jnp.asarray(y)}


def _state(tx, seed=0):
    params = {"w": jnp.zeros((3,)), "b": jnp.zeros(())}
    return TrainState.create(params=params, tx=tx, key=jax.random.key(seed))


def test_step_reduces_loss_and_counts():
    tx = optax.adam(0.1)
    step = jax.jit(make_train_step(_regression, tx))
    state, batch = _state(tx), _data()
    losses = []
    for _ in range(50):
        state, m = step(state, batch, step_key(state))
        losses.append(float(m["loss"]))
    assert int(state.step) == 50
    assert losses[-1] < 0.05 * losses[0]
    assert set(m) >= {"loss", "mse", "grad_norm", "finite"}


def test_ema_tracks_params_and_zero_decay_copies():
    tx = optax.sgd(0.1)
    state = _state(tx)
    s0, _ = make_train_step(_regression, tx, ema_decay=0.0)(state, _data(), jax.random.key(1))
    np.testing.assert_array_equal(s0.ema_params["w"], s0.params["w"])
    s1, _ = make_train_step(_regression, tx, ema_decay=0.999)(state, _data(), jax.random.key(1))
    # warm-up decay at step 0 is 1/10: ema = 0.1 * init + 0.9 * params
    np.testing.assert_allclose(s1.ema_params["w"], 0.9 * s1.params["w"], rtol=1e-6)


def test_scan_of_k_steps_equals_k_single_steps():
    tx = optax.adam(0.05)
    train_step = make_train_step(_regression, tx)
    batches = [_data(seed=i) for i in range(4)]
    state = _state(tx)
    for b in batches:
        state, _ = jax.jit(train_step)(state, b, step_key(state))
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *batches)
    fused, metrics = jax.jit(scan_steps(train_step))(_state(tx), stacked)
    assert metrics["loss"].shape == (4,)
    np.testing.assert_allclose(fused.params["w"], state.params["w"], rtol=1e-6, atol=1e-7)
    assert int(fused.step) == 4


def test_jit_and_no_jit_agree():
    tx = optax.adam(0.05)
    train_step = make_train_step(_regression, tx)
    a, ma = train_step(_state(tx), _data(), jax.random.key(3))
    b, mb = jax.jit(train_step)(_state(tx), _data(), jax.random.key(3))
    np.testing.assert_allclose(a.params["w"], b.params["w"], rtol=1e-6)
    np.testing.assert_allclose(ma["loss"], mb["loss"], rtol=1e-6)


def test_second_call_does_not_retrace():
    traces = []

    def loss(params, batch, key):
        traces.append(1)
        return _regression(params, batch, key)

    tx = optax.adam(0.05)
    step = jax.jit(make_train_step(loss, tx))
    state = _state(tx)
    state, _ = step(state, _data(), jax.random.key(0))
    state, _ = step(state, _data(seed=1), jax.random.key(1))
    assert len(traces) == 1


def test_non_finite_step_leaves_state_untouched():
    def bad(params, batch, key):
        loss, m = _regression(params, batch, key)
        return loss * jnp.where(batch["x"][0, 0] > 100, jnp.nan, 1.0), m

    tx = optax.adam(0.1)
    step = jax.jit(make_train_step(bad, tx))
    state, _ = step(_state(tx), _data(), jax.random.key(0))
    poisoned = dict(_data())
    poisoned["x"] = poisoned["x"].at[0, 0].set(1e3)
    new, m = step(state, poisoned, jax.random.key(1))
    assert not bool(m["finite"])
    np.testing.assert_array_equal(new.params["w"], state.params["w"])
    np.testing.assert_array_equal(new.opt_state[0].mu["w"], state.opt_state[0].mu["w"])
    assert int(new.step) == int(state.step) + 1


def test_model_state_is_threaded_through():
    def loss(params, batch, key, *, model_state):
        mean = jnp.mean(batch["x"], axis=0)
        new_state = {"stats": {"mean": 0.9 * model_state["stats"]["mean"] + 0.1 * mean}}
        l, m = _regression(params, batch, key)
        return l, (m, new_state)

    tx = optax.sgd(0.01)
    state = TrainState.create(params={"w": jnp.zeros((3,)), "b": jnp.zeros(())}, tx=tx,
                              key=jax.random.key(0), model_state={"stats": {"mean": jnp.zeros(3)}})
    batch = _data()
    new, _ = jax.jit(make_train_step(loss, tx, with_model_state=True))(state, batch, jax.random.key(0))
    np.testing.assert_allclose(new.model_state["stats"]["mean"], 0.1 * jnp.mean(batch["x"], 0),
                               rtol=1e-6)


def test_bfloat16_compute_keeps_float32_params():
    seen = []

    def loss(params, batch, key):
        seen.append(params["w"].dtype)
        return _regression(params, batch, key)

    tx = optax.adam(0.05)
    f32, m32 = make_train_step(_regression, tx)(_state(tx), _data(), jax.random.key(0))
    b16, m16 = make_train_step(loss, tx, compute_dtype=jnp.bfloat16)(_state(tx), _data(), jax.random.key(0))
    assert seen == [jnp.bfloat16]
    assert b16.params["w"].dtype == jnp.float32 and m16["loss"].dtype == jnp.float32
    np.testing.assert_allclose(m16["loss"], m32["loss"], rtol=2e-2)
    np.testing.assert_allclose(b16.params["w"], f32.params["w"], rtol=5e-2, atol=1e-3)


def test_prepare_runs_inside_the_step_with_its_own_key():
    calls = []

    def prepare(batch, key):
        calls.append(key)
        return {**batch, "y": batch["y"] + 1000.0}

    tx = optax.sgd(0.0)
    _, m = make_train_step(_regression, tx, prepare=prepare)(_state(tx), _data(), jax.random.key(0))
    assert len(calls) == 1
    assert float(m["loss"]) > 1e5
