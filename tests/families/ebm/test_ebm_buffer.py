"""The replay buffer (draw, reinit share, write-back) and the contrastive-divergence objective
built on it: its gradient is the CD gradient with the chain held fixed, it returns the updated
buffer as model state, and the spine's make_train_step trains it (non-finite steps leave the
buffer untouched)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gmzoo.families.ebm import buffer as replay
from gmzoo.samplers import langevin
from gmzoo.families.ebm.loss import cd_objective, contrastive_divergence
from gmzoo.train.state import TrainState
from gmzoo.train.step import make_train_step


def numbered_buffer(n=50, d=3):
    """Row i holds the value i everywhere, so a drawn start names its slot."""
    return jnp.broadcast_to(jnp.arange(n, dtype=jnp.float32)[:, None], (n, d))


def test_init_buffer_is_uniform_noise_on_the_range():
    buf = np.asarray(replay.init_buffer(jax.random.key(0), 4000, (2,), -3.0, 1.0))
    assert buf.shape == (4000, 2) and buf.min() >= -3.0 and buf.max() <= 1.0
    np.testing.assert_allclose(buf.mean(0), -1.0, atol=0.06)
    np.testing.assert_allclose(buf.var(0), 16 / 12, rtol=0.06)


def test_draw_takes_distinct_slots_and_reinitialises_a_share():
    buf = numbered_buffer()
    x0, slots, fresh = replay.draw(buf, jax.random.key(1), 40, reinit=0.25, low=100.0, high=101.0)
    slots, fresh, x0 = np.asarray(slots), np.asarray(fresh), np.asarray(x0)
    assert len(set(slots.tolist())) == 40 and slots.min() >= 0 and slots.max() < 50
    np.testing.assert_array_equal(x0[~fresh], np.broadcast_to(slots[~fresh, None], (int((~fresh).sum()), 3)))
    assert np.all((x0[fresh] >= 100.0) & (x0[fresh] <= 101.0))
    # the share: Bernoulli(reinit) per start, over many draws
    shares = [float(np.mean(replay.draw(buf, jax.random.key(k), 40, reinit=0.25, low=0.0,
                                         high=1.0)[2])) for k in range(30)]
    assert np.mean(shares) == pytest.approx(0.25, abs=0.04)
    assert not np.any(replay.draw(buf, jax.random.key(2), 40, reinit=0.0, low=0.0, high=1.0)[2])
    assert np.all(replay.draw(buf, jax.random.key(2), 40, reinit=1.0, low=0.0, high=1.0)[2])


def test_draw_covers_every_slot_uniformly():
    buf = numbered_buffer(10, 1)
    counts = np.zeros(10)
    for k in range(400):
        counts[np.asarray(replay.draw(buf, jax.random.key(k), 3, reinit=0.0, low=0.0, high=1.0)[1])] += 1
    np.testing.assert_allclose(counts / counts.sum(), 0.1, atol=0.02)


def test_write_puts_chain_ends_back_where_they_came_from():
    buf = numbered_buffer()
    slots = jnp.array([3, 7, 0], jnp.int32)
    new = replay.write(buf, slots, -jnp.ones((3, 3)))
    changed = np.flatnonzero(np.any(np.asarray(new) != np.asarray(buf), axis=1))
    np.testing.assert_array_equal(changed, [0, 3, 7])
    np.testing.assert_array_equal(np.asarray(new)[[0, 3, 7]], -1.0)
    assert float(jax.grad(lambda v: jnp.sum(replay.write(buf, slots, v)))(jnp.ones((3, 3))).sum()) == 0.0


@pytest.mark.parametrize("call, words", [
    (lambda b: replay.draw(b, jax.random.key(0), 51, reinit=0.1, low=0.0, high=1.0), "1 <= B <= buffer size 50"),
    (lambda b: replay.draw(b, jax.random.key(0), 5, reinit=1.5, low=0.0, high=1.0), "reinit=1.5"),
    (lambda b: replay.draw(b, jax.random.key(0), 5, reinit=0.1, low=1.0, high=1.0), "low < high"),
    (lambda b: replay.init_buffer(jax.random.key(0), 0, (2,), 0.0, 1.0), "buffer size=0"),
])
def test_bad_buffer_arguments_are_refused(call, words):
    with pytest.raises(ValueError) as e:
        call(numbered_buffer())
    assert words in str(e.value) and "\n" not in str(e.value)


# --- the objective --------------------------------------------------------------------------

def quadratic(params, x):
    """E(x) = |x - mu|^2 / (2 s^2) + c, per example [B]."""
    return 0.5 * jnp.sum(jnp.square(x - params["mu"]), -1) / jnp.square(params["s"]) + params["c"]


CHAIN = functools.partial(langevin.ula, step_size=0.05, num_steps=10)


def objective(alpha=0.1, reinit=0.05):
    return functools.partial(contrastive_divergence, apply_fn=quadratic, chain=CHAIN,
                             alpha=alpha, reinit=reinit, noise_range=(-2.0, 2.0))


PARAMS = {"mu": jnp.array([0.5, -0.5]), "s": jnp.array(0.7), "c": jnp.array(0.3)}


def test_cd_objective_is_the_equation():
    e_pos, e_neg = jnp.array([1.0, 2.0]), jnp.array([-1.0, 3.0, 0.0, 0.0])
    loss, m = cd_objective(e_pos, e_neg, alpha=0.5)
    assert float(loss) == pytest.approx(1.5 - 0.5 + 0.5 * (2.5 + 2.5))
    assert float(m["cd_gap"]) == pytest.approx(1.0) and float(m["energy_penalty"]) == pytest.approx(5.0)


def test_the_gradient_is_the_cd_gradient_with_the_chain_held_fixed():
    """d loss / d theta = mean grad E(x+) - mean grad E(x-) + alpha d(penalty), with the
    negatives x- taken as constants: equal to differentiating the objective on the negatives
    the loss itself reports (through the buffer it writes)."""
    batch = {"image": jax.random.normal(jax.random.key(0), (16, 2))}
    state = {"buffer": {"x": replay.init_buffer(jax.random.key(1), 64, (2,), -2.0, 2.0)}}
    loss_fn = objective()
    key = jax.random.key(2)
    (loss, (metrics, new_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        PARAMS, batch, key, model_state=state)
    slots = np.flatnonzero(np.any(np.asarray(new_state["buffer"]["x"]) != np.asarray(state["buffer"]["x"]), 1))
    assert 0 < len(slots) <= 16
    # the negatives the loss used: re-draw with the same key split (draw is deterministic)
    start_key, chain_key = jax.random.split(key)
    x0, slots_drawn, _ = replay.draw(state["buffer"]["x"], start_key, 16, reinit=0.05, low=-2.0, high=2.0)
    x_neg = CHAIN(lambda x: quadratic(PARAMS, x), chain_key, x0)
    np.testing.assert_allclose(new_state["buffer"]["x"][slots_drawn], x_neg, rtol=1e-6)

    def fixed(p):
        return cd_objective(quadratic(p, batch["image"]), quadratic(p, x_neg), 0.1)[0]

    ref_loss, ref_grads = jax.value_and_grad(fixed)(PARAMS)
    assert float(loss) == pytest.approx(float(ref_loss), rel=1e-5)
    for k in PARAMS:
        np.testing.assert_allclose(grads[k], ref_grads[k], rtol=1e-4, atol=1e-6)
    # the constant c cancels from the CD gap: only the penalty moves it
    e_pos, e_neg = quadratic(PARAMS, batch["image"]), quadratic(PARAMS, x_neg)
    np.testing.assert_allclose(grads["c"], 0.1 * 2 * (jnp.mean(e_pos) + jnp.mean(e_neg)), rtol=1e-4)
    # and differentiating through the chain would give something else (the test can fail)
    def through(p):
        x = jax.lax.scan(lambda x, k: (x - 0.025 * jax.grad(lambda y: quadratic(p, y).sum())(x)
                                       + jnp.sqrt(0.05) * jax.random.normal(k, x.shape), None),
                         x0, jax.random.split(chain_key, 10))[0]
        return cd_objective(quadratic(p, batch["image"]), quadratic(p, x), 0.1)[0]
    assert not np.allclose(jax.grad(through)(PARAMS)["mu"], grads["mu"], rtol=1e-3)


def test_without_a_buffer_the_chains_start_from_noise():
    batch = {"image": jnp.zeros((8, 2))}
    loss, metrics = objective()(PARAMS, batch, jax.random.key(0))
    assert np.isfinite(float(loss)) and "reinit_share" not in metrics
    loss2, _ = objective()(PARAMS, batch, jax.random.key(0))
    assert float(loss) == float(loss2)


def test_make_train_step_trains_it_and_guards_the_buffer():
    """Through the spine's step: the buffer advances with the state, a learned Gaussian energy
    moves its mean to the data, and a non-finite step leaves params and buffer as they were."""
    data = 1.5 + 0.3 * jax.random.normal(jax.random.key(0), (256, 2))
    state0 = {"buffer": {"x": replay.init_buffer(jax.random.key(1), 512, (2,), -2.0, 2.0)}}
    params = {"mu": jnp.zeros(2), "s": jnp.array(1.0), "c": jnp.array(0.0)}
    tx = optax.adam(0.05)
    step = jax.jit(make_train_step(objective(alpha=0.01, reinit=0.05), tx, ema_decay=0.0,
                                   with_model_state=True))
    state = TrainState.create(params=params, tx=tx, key=jax.random.key(2), model_state=state0)
    for i in range(150):
        state, metrics = step(state, {"image": data[(i * 64) % 256:(i * 64) % 256 + 64]},
                              jax.random.fold_in(state.key, state.step))
        assert bool(metrics["finite"])
    np.testing.assert_allclose(state.params["mu"], 1.5, atol=0.2)
    assert not np.allclose(state.model_state["buffer"]["x"], state0["buffer"]["x"])
    np.testing.assert_array_equal(state.ema_params["mu"], state.params["mu"])
    bad = {"image": jnp.full((64, 2), jnp.nan)}
    after, metrics = step(state, bad, jax.random.key(3))
    assert not bool(metrics["finite"])
    np.testing.assert_array_equal(after.model_state["buffer"]["x"], state.model_state["buffer"]["x"])
    np.testing.assert_array_equal(after.params["mu"], state.params["mu"])
