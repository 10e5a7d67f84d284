"""vae_gan (Larsen et al. 2016) trains through the spine's two-player step: Enc, Dec and Dis all
learn; the generator's one loss gives Enc the gradient of kl_weight L_prior + L_llike and Dec the
gradient of gamma L_llike + L_GAN (no GAN gradient into Enc, gamma on Dec only); the KL is the
closed form; L_llike vanishes on identical inputs; samples are in [-1, 1]; `evaluate` reports
FD/KID; configs the model cannot take are refused in one line before any compute."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo import config as cfglib
from gmzoo import zoo
from gmzoo.config import ConfigError
from gmzoo.data.pipeline import ordered_batches
from gmzoo.losses.gaussian import diag_gaussian_log_prob, reparameterize
from gmzoo.losses import vae_gan as vae_gan_losses
from gmzoo.recipes import vae_gan
from gmzoo.zoo import evaluate
from gmzoo.train.loop import init_state
from gmzoo.zoo import setup, train
from player_state import changed, counts

TINY = ["data.name=digits", "model.latent_dim=4", "model.widths=4,8", "model.features=4",
        "train.batch_size=16", "train.steps=2", "train.log_every=1", "train.checkpoint_every=2",
        "train.eval_every=0", "train.sample_every=0", "train.progress_bar=false",
        "eval.num_samples=16", "eval.max_examples=16", "eval.batch_size=16",
        "eval.feature_net_steps=20"]
ENC, DEC = vae_gan.ENCODER_PARAMS, vae_gan.DECODER_PARAMS


def tiny(extra=()):
    return cfglib.override(zoo.get("vae_gan").default(), TINY + list(extra))


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]






def _part(tree, names):
    return {k: tree[k] for k in names}


def _close(a, b, **kw):
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_allclose(x, y, **kw)


def _zero(tree):
    return all(np.all(x == 0) for x in _leaves(tree))


def _batch(run, n=16):
    """A prepared batch of n test digits in [-1, 1]."""
    raw = next(iter(ordered_batches(run.test_source, n, n)))
    return run.space.prepare({k: jnp.asarray(v) for k, v in raw.items()}, jax.random.key(3))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(workdir, initial state, state after a 2-step run), trained once."""
    workdir = str(tmp_path_factory.mktemp("vae_gan") / "run")
    start = init_state(setup(tiny()))
    return workdir, start, train(tiny(), workdir, verbose=False)


@pytest.fixture(scope="module")
def model():
    """(run, nets, g, d, d_state, x) of the tiny config with kl_weight = 0.5, gamma = 0.25."""
    run = setup(tiny(["model.kl_weight=0.5", "model.gamma=0.25"]))
    state = jax.device_get(init_state(run))
    g, d = state.params["generator"], state.params["discriminator"]
    return run, run.module, g, d, state.model_state["discriminator"], _batch(run)["image"]


def test_encoder_decoder_and_discriminator_all_learn(trained):
    workdir, start, state = trained
    assert int(jax.device_get(state.step)) == 2
    g0, g1 = start.params["generator"], state.params["generator"]
    assert set(g1) == set(ENC) | set(DEC)
    for name in (*ENC, *DEC):
        assert changed(g0[name], g1[name]), name
    assert changed(start.params["discriminator"], state.params["discriminator"])
    assert counts(state.opt_state["generator"]) == {2}
    assert counts(state.opt_state["discriminator"]) == {2}
    assert changed(start.ema_params["generator"], state.ema_params["generator"])
    assert set(state.model_state) == {"discriminator"}  # Dis's batch norm; Enc/Dec have none
    assert changed(start.model_state["discriminator"], state.model_state["discriminator"])
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert [r["step"] for r in rows] == [1, 2]
    assert {"g_kl", "g_feature_loss", "g_gan_loss", "d_loss", "d_recon_score",
            "d_prior_score"} <= set(rows[-1])
    assert all(np.isfinite(v) for k, v in rows[-1].items() if k != "split")


def test_each_term_reaches_only_its_networks(model):
    """grad_Enc L_GAN = 0 and grad_Dec L_prior = 0 exactly; gamma scales L_llike's gradient into
    Dec and leaves its gradient into Enc alone."""
    _, nets, g, d, d_state, x = model
    key = jax.random.key(7)

    @jax.jit
    def grads(p):  # {gamma: {term: gradient w.r.t. the VAE params}}, one compiled function
        terms = lambda p, gamma: vae_gan.generator_terms(nets, p, d, d_state, x, key,
                                                         gamma=gamma)[0]
        return {gamma: jax.jacrev(terms)(p, gamma) for gamma in (1.0, 0.25)}

    by_gamma = grads(g)
    gan, prior = by_gamma[0.25]["gan"], by_gamma[0.25]["prior"]
    assert _zero(_part(gan, ENC)) and not _zero(_part(gan, DEC))
    assert _zero(_part(prior, DEC)) and not _zero(_part(prior, ENC))
    full, quarter = by_gamma[1.0]["llike"], by_gamma[0.25]["llike"]
    assert not _zero(_part(full, ENC)) and not _zero(_part(full, DEC))
    _close(_part(quarter, ENC), _part(full, ENC), rtol=1e-6, atol=1e-9)
    _close(_part(quarter, DEC), jax.tree.map(lambda t: 0.25 * t, _part(full, DEC)),
           rtol=1e-5, atol=1e-9)


def test_generator_loss_gives_enc_and_dec_their_algorithm_1_gradients(model):
    """The gradient gan_step takes of the generator's one loss equals, on Enc, the gradient of
    the plain kl_weight L_prior + L_llike and, on Dec, gamma grad L_llike + grad L_GAN, with
    each term written here without any stop_gradient (same draws: q_key, p_key = split(key))."""
    run, nets, g, d, d_state, x = model
    m = run.config.model
    key = jax.random.key(11)
    _, g_objective = vae_gan._objectives(m, nets)
    # compiled (one program each, not op by op: the same numbers, a third of the time)
    routed = jax.jit(jax.grad(lambda p: g_objective(p, d, {"image": x}, key,
                                                    {"discriminator": d_state})[0]))(g)

    def plain_terms(p):
        q_key, p_key = jax.random.split(key)
        mean, log_var = vae_gan.encode(nets, p, x)
        z = reparameterize(q_key, mean, log_var)
        z_p = jax.random.normal(p_key, z.shape, z.dtype)
        kl = 0.5 * jnp.sum(jnp.exp(log_var) + mean**2 - 1.0 - log_var, axis=-1).mean()
        x_tilde = vae_gan.decode(nets, p, z)
        features = lambda v: vae_gan.discriminate(nets, d, d_state, v)[1]
        logit = lambda v: vae_gan.discriminate(nets, d, d_state, v)[0]
        llike = 0.5 * jnp.sum((features(x) - features(x_tilde)) ** 2, axis=1).mean()
        gan = (jnp.mean(jax.nn.softplus(-logit(x_tilde)))
               + jnp.mean(jax.nn.softplus(-logit(vae_gan.decode(nets, p, z_p)))))
        return kl, llike, gan

    kl_g, llike_g, gan_g = (jax.jit(jax.grad(lambda p, i=i: plain_terms(p)[i]))(g) for i in range(3))
    assert not _zero(_part(gan_g, ENC))  # without the routing, L_GAN would reach Enc
    enc = jax.tree.map(lambda a, b: m.kl_weight * a + b, _part(kl_g, ENC), _part(llike_g, ENC))
    dec = jax.tree.map(lambda a, b: m.gamma * a + b, _part(llike_g, DEC), _part(gan_g, DEC))
    _close(_part(routed, ENC), enc, rtol=1e-4, atol=1e-6)
    _close(_part(routed, DEC), dec, rtol=1e-4, atol=1e-6)
    loss = jax.jit(lambda p: g_objective(p, d, {"image": x}, key, {"discriminator": d_state})[0])(g)
    kl, llike, gan = jax.jit(plain_terms)(g)
    np.testing.assert_allclose(loss, m.kl_weight * kl + llike + gan, rtol=1e-5)


def test_kl_term_is_the_closed_form(model):
    _, nets, g, d, d_state, x = model
    terms, _ = vae_gan.generator_terms(nets, g, d, d_state, x, jax.random.key(0), gamma=1.0)
    mean, log_var = (np.asarray(a, np.float64) for a in vae_gan.encode(nets, g, x))
    closed = np.mean(0.5 * np.sum(np.exp(log_var) + mean**2 - 1.0 - log_var, axis=1))
    assert closed > 0
    np.testing.assert_allclose(float(terms["prior"]), closed, rtol=1e-5)


@pytest.mark.parametrize("layer, shape", [(1, (16, 4, 4, 4)), (2, (16, 2 * 2 * 8))])
def test_feature_loss_is_the_gaussian_nll_and_zero_on_identical_inputs(model, layer, shape):
    """L_llike = -log N(Dis_l(x); Dis_l(x~), I) - (D_l / 2) log 2 pi, per example; it is 0 when
    Dec reproduces x (the same input through Dis gives the same features)."""
    _, nets, _, d, d_state, x = model
    nets = vae_gan.VAEGANNets(nets.vae, nets.discriminator, nets.latent_dim, layer)
    _, real, _ = vae_gan.discriminate(nets, d, d_state, x)
    _, same, _ = vae_gan.discriminate(nets, d, d_state, x)
    _, other, _ = vae_gan.discriminate(nets, d, d_state, jnp.flip(x, axis=2))
    assert real.shape == shape
    np.testing.assert_array_equal(vae_gan_losses.feature_loss(real, same), np.zeros(16))
    loss = vae_gan_losses.feature_loss(real, other)  # [B]
    flat = lambda a: a.reshape(16, -1)
    dim = math.prod(shape[1:])
    nll = -diag_gaussian_log_prob(flat(real), flat(other), jnp.zeros((dim,)))
    np.testing.assert_allclose(loss, nll - 0.5 * dim * math.log(2 * math.pi), rtol=1e-4)
    assert np.all(loss > 0)


def test_samples_in_the_data_range(model):
    run, _, g, d, _, _ = model
    images = run.sample_fn(True)({"generator": g, "discriminator": d}, jax.random.key(0), 5)
    assert images.shape == (5, 8, 8, 1)
    assert np.all(np.isfinite(images)) and np.all((images >= -1) & (images <= 1))
    assert np.asarray(images).std() > 0


def test_evaluate_reports_fd_and_kid(trained):
    report = evaluate(trained[0], verbose=False)
    quality = report["sample_quality"]
    assert np.isfinite(quality["FD-digits (samples vs train)"])
    assert np.isfinite(quality["KID-digits (samples vs train)"])
    assert np.isfinite(report["heldout"]["d_loss"]) and np.isfinite(report["heldout"]["g_kl"])


@pytest.mark.parametrize("extra, words", [
    (["data.scale=unit"], "data.scale=symmetric"),
    (["data.binarize=dynamic"], "data.binarize=none"),
    (["model.feature_layer=3"], "model.feature_layer"),
    (["model.gamma=-1"], "model.gamma"),
    (["model.kl_weight=-0.5"], "model.kl_weight"),
    (["model.latent_dim=0"], "model.latent_dim"),
    (["model.features=0"], "model.features"),
    (["model.widths=0,8"], "model.widths"),
    (["model.widths=4,8,16,32"], "(Enc/Dec)"),
    (["model.d_learning_rate=0"], "model.d_learning_rate"),
    (["sample.steps=5"], "one sampler"),
])
def test_refusals_are_one_line_and_before_compute(extra, words, tmp_path):
    with pytest.raises(ConfigError) as e:
        setup(tiny(extra))
    assert words in str(e.value) and "\n" not in str(e.value)
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError):
        train(tiny(extra), str(workdir), verbose=False)
    assert not workdir.exists()


def test_image_shape_dis_cannot_take():
    recipe = zoo.get("vae_gan")
    with pytest.raises(ConfigError) as e:
        recipe.check(tiny(["model.widths=4"]), (10, 10, 1))
    assert "(Dis)" in str(e.value) and "divisible by 4" in str(e.value)
    recipe.check(cfglib.override(tiny(), ["data.name=mnist5k"]), (28, 28, 1))
