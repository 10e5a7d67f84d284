"""The two-player GAN step: the order of updates against a hand-written reference, each player
frozen while the other learns, per-player optimizers and EMA, the finite guard, batch statistics,
scan fusion, and a 1-D toy that the step must actually solve (non-saturating GAN and WGAN-GP)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gmzoo.losses import gan
from gmzoo.train.gan_step import (DISCRIMINATOR, GENERATOR, PLAYERS, make_gan_train_step,
                                  players_tx)
from gmzoo.train.optim import ema_decay_at
from gmzoo.train.state import TrainState, step_key
from gmzoo.train.step import scan_steps

H = 16  # critic width


# ---- the 1-D toy: G(z) = a z + b, z ~ N(0, 1); data N(2, 0.5^2); a tanh-MLP discriminator ----

def generate(g, z):
    return g["a"] * z + g["b"]  # [B]


def critic(d, x):
    h = jnp.tanh(x[:, None] * d["w1"] + d["b1"])  # [B, H]
    return h @ d["w2"] + d["b2"]  # [B] logits / critic values


def ns_d_loss(d, g, batch, key):
    fake = generate(g, jax.random.normal(key, batch["x"].shape))
    loss = gan.minimax_d_loss(critic(d, batch["x"]), critic(d, fake))
    return loss, {"real_mean": jnp.mean(batch["x"])}


def ns_g_loss(g, d, batch, key):
    fake = generate(g, jax.random.normal(key, batch["x"].shape))
    return gan.non_saturating_g_loss(critic(d, fake)), {"fake_mean": jnp.mean(fake)}


def wgan_gp_d_loss(d, g, batch, key):
    """E f(G(z)) - E f(x) + 10 E relu(||grad f(x_hat)|| - 1)^2: the one-sided penalty of
    Gulrajani et al. (2017, Sec. 4), `gradient_penalty(one_sided=True)`. The two-sided one cannot solve this 1-D toy:
    a scalar gradient cannot turn from +1 to -1 without passing 0 on the interpolates (in d > 1
    it can rotate at norm 1), a barrier of lambda = 10 against a gain of about |b - 2|, so the
    critic's slope keeps the sign it first takes and G runs off at Adam's speed (observed
    b = 5.8, -5.5, -5.5 after 600 steps of this test's setup, seeds 0-2)."""
    noise_key, mix_key = jax.random.split(key)
    real = batch["x"]
    fake = generate(g, jax.random.normal(noise_key, real.shape))
    penalty = gan.gradient_penalty(lambda x: critic(d, x), real, fake, mix_key, one_sided=True)
    return gan.wasserstein_d_loss(critic(d, real), critic(d, fake)) + 10.0 * penalty, {}


def wgan_g_loss(g, d, batch, key):
    fake = generate(g, jax.random.normal(key, batch["x"].shape))
    return gan.wasserstein_g_loss(critic(d, fake)), {}


def players(seed=0):
    rng = np.random.default_rng(seed)
    d = {"w1": rng.normal(size=(H,)), "b1": rng.normal(size=(H,)),
         "w2": rng.normal(size=(H,)) / np.sqrt(H), "b2": np.zeros(())}
    g = {"a": np.ones(()), "b": np.zeros(())}
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32),
                        {GENERATOR: g, DISCRIMINATOR: d})


def gan_state(tx_g, tx_d, seed=0, model_state=None):
    return TrainState.create(params=players(seed), tx=players_tx(tx_g, tx_d),
                             key=jax.random.key(seed), model_state=model_state)


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": jnp.asarray(2.0 + 0.5 * rng.normal(size=(n,)), jnp.float32)}  # [n]


def assert_trees_close(a, b, **tol):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, **tol)


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)


# ---- the optimizer over players -----------------------------------------------------------

def test_players_tx_gives_each_player_its_own_optimizer():
    tx = players_tx(optax.sgd(1.0), optax.sgd(0.1))
    params = players()
    state = tx.init(params)
    assert set(state) == set(PLAYERS)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, state, params)
    np.testing.assert_allclose(updates[GENERATOR]["a"], -1.0)
    np.testing.assert_allclose(updates[DISCRIMINATOR]["w1"], -0.1 * np.ones(H), rtol=1e-6)
    with pytest.raises(ValueError, match="generator"):
        tx.init({"g": params[GENERATOR], "d": params[DISCRIMINATOR]})


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="d_steps"):
        make_gan_train_step(ns_d_loss, ns_g_loss, optax.sgd(0.1), optax.sgd(0.1), d_steps=0)
    step = make_gan_train_step(ns_d_loss, ns_g_loss, optax.sgd(0.1), optax.sgd(0.1), d_steps=3,
                               split_batch=True)
    with pytest.raises(ValueError, match="divisible by 3"):
        step(gan_state(optax.sgd(0.1), optax.sgd(0.1)), data(16), jax.random.key(0))


# ---- order of updates: k discriminator updates against a frozen G, then one G update -------

def reference_step(params, opt_state, batch, key, tx_g, tx_d, k):
    """Goodfellow et al. Alg. 1 written out: k optax updates of D with G fixed, then one of G."""
    _, d_key, g_key = jax.random.split(key, 3)
    g, d = params[GENERATOR], params[DISCRIMINATOR]
    g_opt, d_opt = opt_state[GENERATOR], opt_state[DISCRIMINATOR]
    for d_key_i in jax.random.split(d_key, k):
        grads = jax.grad(lambda d_: ns_d_loss(d_, g, batch, d_key_i)[0])(d)
        updates, d_opt = tx_d.update(grads, d_opt, d)
        d = optax.apply_updates(d, updates)
    grads = jax.grad(lambda g_: ns_g_loss(g_, d, batch, g_key)[0])(g)
    updates, g_opt = tx_g.update(grads, g_opt, g)
    g = optax.apply_updates(g, updates)
    return {GENERATOR: g, DISCRIMINATOR: d}, {GENERATOR: g_opt, DISCRIMINATOR: d_opt}


def test_step_matches_k_discriminator_updates_then_one_generator_update():
    k = 2
    tx_g, tx_d = optax.adam(0.05), optax.adam(0.1)
    step = jax.jit(make_gan_train_step(ns_d_loss, ns_g_loss, tx_g, tx_d, d_steps=k))
    state = gan_state(tx_g, tx_d)
    params, opt_state = state.params, state.opt_state
    reference = jax.jit(reference_step, static_argnums=(4, 5, 6))
    for i in range(2):
        batch, key = data(64, seed=i), jax.random.key(10 + i)
        state, m = step(state, batch, key)
        params, opt_state = reference(params, opt_state, batch, key, tx_g, tx_d, k)
        assert_trees_close(state.params, params, rtol=1e-5, atol=1e-6)
        assert_trees_close(state.opt_state, opt_state, rtol=1e-5, atol=1e-7)
    assert bool(m["finite"]) and int(state.step) == 2
    assert m["loss"] == m["g_loss"]
    np.testing.assert_allclose(m["d_real_mean"], np.mean(batch["x"]), rtol=1e-6)  # whole batch
    assert {"d_loss", "g_loss", "d_grad_norm", "g_grad_norm", "finite", "d_finite", "g_finite",
            "loss", "d_real_mean", "g_fake_mean"} == set(m)
    # Generator's Adam counts its own updates (1 per step), D's counts k per step.
    assert int(state.opt_state[GENERATOR][0].count) == 2
    assert int(state.opt_state[DISCRIMINATOR][0].count) == 2 * k


def test_a_frozen_generator_stays_exactly_while_the_discriminator_learns():
    tx_g, tx_d = optax.set_to_zero(), optax.adam(0.1)
    step = jax.jit(make_gan_train_step(ns_d_loss, ns_g_loss, tx_g, tx_d, d_steps=3))
    start = gan_state(tx_g, tx_d)
    state = start
    for i in range(2):
        state, m = step(state, data(64, seed=i), jax.random.key(i))
    assert bool(m["finite"]) and float(m["g_grad_norm"]) > 0  # G had a gradient, and ignored it
    assert_trees_equal(state.params[GENERATOR], start.params[GENERATOR])
    assert_trees_close(state.ema_params[GENERATOR], start.params[GENERATOR], rtol=1e-6)
    for x, x0 in zip(jax.tree.leaves(state.params[DISCRIMINATOR]),
                     jax.tree.leaves(start.params[DISCRIMINATOR])):
        assert np.max(np.abs(np.asarray(x) - np.asarray(x0))) > 1e-3


def test_a_frozen_discriminator_stays_exactly_while_the_generator_learns():
    tx_g, tx_d = optax.adam(0.1), optax.set_to_zero()
    step = jax.jit(make_gan_train_step(ns_d_loss, ns_g_loss, tx_g, tx_d, d_steps=3))
    start = gan_state(tx_g, tx_d)
    state = start
    for i in range(2):
        state, m = step(state, data(64, seed=i), jax.random.key(i))
    assert float(m["d_grad_norm"]) > 0
    assert_trees_equal(state.params[DISCRIMINATOR], start.params[DISCRIMINATOR])
    assert_trees_equal(state.ema_params[DISCRIMINATOR], start.params[DISCRIMINATOR])
    for x, x0 in zip(jax.tree.leaves(state.params[GENERATOR]),
                     jax.tree.leaves(start.params[GENERATOR])):
        assert abs(float(x) - float(x0)) > 0.1  # two Adam steps of 0.1 each


def test_generator_ema_follows_ema_decay_at_and_discriminator_entry_is_current():
    tx_g, tx_d = optax.adam(0.1), optax.adam(0.1)
    step = jax.jit(make_gan_train_step(ns_d_loss, ns_g_loss, tx_g, tx_d, d_steps=2,
                                       ema_decay=0.2))
    state = gan_state(tx_g, tx_d)
    ema = state.params[GENERATOR]
    for t in range(4):  # warm-up decays 0.1, 0.1818, then capped at 0.2
        state, _ = step(state, data(64, seed=t), jax.random.key(t))
        decay = float(ema_decay_at(0.2, t))
        ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema, state.params[GENERATOR])
        assert_trees_close(state.ema_params[GENERATOR], ema, rtol=1e-6)
        assert_trees_equal(state.ema_params[DISCRIMINATOR], state.params[DISCRIMINATOR])
    assert decay == pytest.approx(0.2) and abs(float(state.ema_params[GENERATOR]["b"] - ema["b"])) < 1e-6


# ---- finite guard per player ----------------------------------------------------------------

def poisoned_d_loss(d, g, batch, key):
    loss, m = ns_d_loss(d, g, batch, key)
    return loss * jnp.where(jnp.any(batch["x"] > 100.0), jnp.nan, 1.0), m


def poisoned_g_loss(g, d, batch, key):
    loss, m = ns_g_loss(g, d, batch, key)
    return loss * jnp.where(jnp.any(batch["x"] > 100.0), jnp.nan, 1.0), m


@pytest.mark.parametrize("split_batch", [False, True])
def test_non_finite_discriminator_update_reverts_the_discriminator(split_batch):
    # With split_batch the poisoned row 1 is in the chunk of the 2nd of 2 D updates: the first
    # update was finite, and is reverted too (a player's update is all k or nothing).
    tx_g, tx_d = optax.adam(0.1), optax.adam(0.1)
    step = jax.jit(make_gan_train_step(poisoned_d_loss, ns_g_loss, tx_g, tx_d, d_steps=2,
                                       split_batch=split_batch))
    state, _ = step(gan_state(tx_g, tx_d), data(64), jax.random.key(0))
    bad = {"x": data(64, seed=1)["x"].at[1].set(1e3)}
    new, m = step(state, bad, jax.random.key(1))
    assert not bool(m["finite"]) and not bool(m["d_finite"]) and bool(m["g_finite"])
    assert_trees_equal(new.params[DISCRIMINATOR], state.params[DISCRIMINATOR])
    assert_trees_equal(new.opt_state[DISCRIMINATOR], state.opt_state[DISCRIMINATOR])
    assert_trees_equal(new.ema_params[DISCRIMINATOR], state.params[DISCRIMINATOR])
    assert float(new.params[GENERATOR]["b"]) != float(state.params[GENERATOR]["b"])
    assert int(new.step) == int(state.step) + 1


def test_non_finite_generator_update_leaves_the_generator_and_its_ema():
    tx_g, tx_d = optax.adam(0.1), optax.adam(0.1)
    step = jax.jit(make_gan_train_step(ns_d_loss, poisoned_g_loss, tx_g, tx_d, d_steps=2))
    state, _ = step(gan_state(tx_g, tx_d), data(64), jax.random.key(0))
    bad = {"x": data(64, seed=1)["x"].at[1].set(1e3)}
    new, m = step(state, bad, jax.random.key(1))
    assert not bool(m["finite"]) and bool(m["d_finite"]) and not bool(m["g_finite"])
    assert_trees_equal(new.params[GENERATOR], state.params[GENERATOR])
    assert_trees_equal(new.ema_params[GENERATOR], state.ema_params[GENERATOR])
    assert_trees_equal(new.opt_state[GENERATOR], state.opt_state[GENERATOR])
    assert int(new.opt_state[DISCRIMINATOR][0].count) == 4


# ---- batch statistics, batch splitting, precision -------------------------------------------

def test_each_phase_keeps_only_its_own_players_batch_statistics():
    """Both losses run both networks "in train mode" (each bumps both counters, as a DCGAN
    loss updating both players' batch stats would); the D updates keep D's entry, the G update
    keeps G's, and each loss sees the latest entries."""
    def bump(model_state):
        return jax.tree.map(lambda c: c + 1, model_state)

    def d_loss(d, g, batch, key, *, model_state):
        loss, _ = ns_d_loss(d, g, batch, key)
        seen = {"saw_d": model_state[DISCRIMINATOR]["n"], "saw_g": model_state[GENERATOR]["n"]}
        return loss, (seen, bump(model_state))

    def g_loss(g, d, batch, key, *, model_state):
        loss, _ = ns_g_loss(g, d, batch, key)
        seen = {"saw_d": model_state[DISCRIMINATOR]["n"], "saw_g": model_state[GENERATOR]["n"]}
        return loss, (seen, bump(model_state))

    tx_g, tx_d = optax.adam(0.1), optax.adam(0.1)
    counters = {p: {"n": jnp.zeros((), jnp.float32)} for p in PLAYERS}
    step = jax.jit(make_gan_train_step(d_loss, g_loss, tx_g, tx_d, d_steps=3,
                                       with_model_state=True))
    state, m = step(gan_state(tx_g, tx_d, model_state=counters), data(64), jax.random.key(0))
    assert float(state.model_state[DISCRIMINATOR]["n"]) == 3  # one per D update
    assert float(state.model_state[GENERATOR]["n"]) == 1  # one per G update
    assert float(m["d_saw_d"]) == 2 and float(m["d_saw_g"]) == 0  # the last of 3 D updates
    assert float(m["g_saw_d"]) == 3 and float(m["g_saw_g"]) == 0
    state, m = step(state, data(64), jax.random.key(1))
    assert float(state.model_state[DISCRIMINATOR]["n"]) == 6
    assert float(state.model_state[GENERATOR]["n"]) == 2


def test_split_batch_gives_each_discriminator_update_a_strided_chunk():
    tx_g, tx_d = optax.adam(0.1), optax.adam(0.1)
    batch = {"x": jnp.arange(12, dtype=jnp.float32)}
    _, m = jax.jit(make_gan_train_step(ns_d_loss, ns_g_loss, tx_g, tx_d, d_steps=3,
                                       split_batch=True))(
        gan_state(tx_g, tx_d), batch, jax.random.key(0))
    np.testing.assert_allclose(m["d_real_mean"], np.mean([2.0, 5.0, 8.0, 11.0]))  # rows 2::3


def test_bfloat16_compute_casts_both_players_and_keeps_float32_state():
    seen = []

    def d_loss(d, g, batch, key):
        seen.append((d["w1"].dtype, g["a"].dtype))
        return ns_d_loss(d, g, batch, key)

    tx_g, tx_d = optax.adam(0.1), optax.adam(0.1)
    state, m = make_gan_train_step(d_loss, ns_g_loss, tx_g, tx_d, compute_dtype=jnp.bfloat16)(
        gan_state(tx_g, tx_d), data(64), jax.random.key(0))
    assert seen == [(jnp.bfloat16, jnp.bfloat16)]
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
    assert m["d_loss"].dtype == jnp.float32 and bool(m["finite"])


# ---- the spine's machinery runs the GAN step unchanged --------------------------------------

def test_scan_steps_equals_calls_of_the_jitted_step():
    tx_g, tx_d = optax.adam(0.05), optax.adam(0.1)
    train_step = make_gan_train_step(ns_d_loss, ns_g_loss, tx_g, tx_d, d_steps=2)
    batches = [data(32, seed=i) for i in range(3)]
    state = gan_state(tx_g, tx_d)
    jitted = jax.jit(train_step)
    for b in batches:
        state, _ = jitted(state, b, step_key(state))
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *batches)
    fused, metrics = jax.jit(scan_steps(train_step))(gan_state(tx_g, tx_d), stacked)
    assert metrics["loss"].shape == (3,) and int(fused.step) == 3
    assert_trees_close(fused.params, state.params, rtol=1e-5, atol=1e-6)
    assert_trees_close(fused.ema_params, state.ema_params, rtol=1e-5, atol=1e-6)
    assert_trees_close(fused.opt_state, state.opt_state, rtol=1e-5, atol=1e-7)


# ---- end to end: the step solves the 1-D toy --------------------------------------------------

@pytest.mark.parametrize("losses, tol", [
    # Observed (EMA generator after 600 steps, seeds 0-4 of this setup): non-saturating mean
    # 1.9937-2.0031, std 0.4939-0.5050; WGAN-GP mean 1.9969-2.0124, std 0.4897-0.5040.
    # The generator starts at mean 0, std 1.
    ((ns_d_loss, ns_g_loss), 0.03),
    ((wgan_gp_d_loss, wgan_g_loss), 0.05),
], ids=["non_saturating", "wgan_gp"])
def test_gan_recovers_the_mean_and_std_of_1d_gaussian_data(losses, tol):
    steps, batch_size = 600, 256
    tx_g, tx_d = optax.adam(0.01, b1=0.5), optax.adam(0.02, b1=0.5)
    train_step = make_gan_train_step(*losses, tx_g, tx_d, d_steps=5, ema_decay=0.99)

    # A rolled lax.scan of the same step with the same keys as scan_steps (whose equality with
    # single steps is tested above): scan_steps unrolls, and compiling 20 unrolled steps took
    # 10 s on this CPU against 1.7 s for the rolled loop (no convolutions here to slow it).
    def run(state, batches):
        return jax.lax.scan(lambda s, b: train_step(s, b, step_key(s)), state, batches)

    batches = {"x": data(steps * batch_size)["x"].reshape(steps, batch_size)}  # [K, B]
    state, metrics = jax.jit(run)(gan_state(tx_g, tx_d), batches)
    assert bool(jnp.all(metrics["finite"]))
    g = state.ema_params[GENERATOR]  # G(z) = a z + b: mean b, std |a| exactly
    mean, std = float(g["b"]), abs(float(g["a"]))
    assert abs(mean - 2.0) < tol and abs(std - 0.5) < tol, (mean, std)
