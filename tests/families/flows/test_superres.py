"""The super-resolution conditional flow ``cond_flow``: given the low-resolution image, y' ->
latents is exactly invertible and log p(y' | x_lr) is the float64 change of variables (the
logit's log-det included); the low-resolution image reaches the flow (log p and samples move
with it) and temperature 0 is deterministic; the source is the block mean of the *clean* image
(the dequantization noise does not reach it); refusals in one line before any compute; one
tiny ``gmzoo train`` + ``gmzoo evaluate`` run through ``gmzoo.zoo`` reports the conditional
likelihood and PSNR/SSIM of the output beside bicubic upsampling. Training, sampling, held-out
loss and resume at the tiny size: tests/test_model_table.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gmzoo import config as cfglib
from gmzoo import zoo
from gmzoo.data import paired
from gmzoo.families.flows import models
from gmzoo.families.flows import superres as sr
from gmzoo.train.loop import translate_images

# One small model for the property tests: a 1-level Glow (ActNorm, 1x1 conv, coupling, twice)
# on x2 super-resolution; its only prior is the per-channel top prior.
MODEL = sr.SuperResFlow(models.Glow(num_levels=1, steps_per_level=2, hidden=8, num_layers=1),
                        sr.LowResEncoder(features=4, num_layers=2), factor=2, logit_alpha=0.05)
TINY_SHAPE, TINY_LR = (1, 4, 4, 1), (1, 2, 2, 1)  # D = 16 for the float64 Jacobian
Y_SHAPE, LR_SHAPE = (2, 8, 8, 1), (2, 4, 4, 1)


def _unit(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).uniform(0.02, 0.98, size=shape), jnp.float32)


@pytest.fixture(scope="module")
def variables(numpy_init):
    """Random params away from the identity: every coupling's last layer non-zero, log-scales
    and the top prior of order 1."""
    v = numpy_init(MODEL, _unit(Y_SHAPE, 0), _unit(LR_SHAPE, 1), scale=0.7, seed=3)

    def widen(path, a):
        return a * 2.0 + 1.0 if path[-1].key == "scale_factor" else a
    return jax.tree_util.tree_map_with_path(widen, v)


def test_invertible_given_the_condition_and_log_p_is_the_change_of_variables(variables):
    """decode(encode(y'; x_lr); x_lr) = y' (float32, 1e-4) on latents that are not y' (nor its
    logit); in float64 on [1, 4, 4, 1]: log p(y' | x_lr) = log N(z; top prior) + log|det
    dz/dy'| with the Jacobian of the whole map y' -> logit -> flow taken by jacfwd."""
    y, x_lr = _unit(Y_SHAPE, 2), _unit(LR_SHAPE, 3)

    @jax.jit
    def roundtrip(v, y, x_lr):
        zs = MODEL.apply(v, y, x_lr, method=MODEL.encode)
        return zs, MODEL.apply(v, zs, x_lr, method=MODEL.decode)

    zs, y_back = roundtrip(variables, y, x_lr)
    flat = np.asarray(zs[0]).reshape(2, -1)
    logit = np.log(0.05 + 0.9 * np.asarray(y)) - np.log1p(-(0.05 + 0.9 * np.asarray(y)))
    assert np.abs(np.sort(flat, 1) - np.sort(logit.reshape(2, -1), 1)).max() > 0.1
    np.testing.assert_allclose(y_back, y, atol=1e-4, rtol=0)

    rng = np.random.default_rng(5)
    with jax.enable_x64(True):
        v = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), variables)
        y64 = jnp.asarray(rng.uniform(0.02, 0.98, size=TINY_SHAPE))
        c64 = jnp.asarray(rng.uniform(0.0, 1.0, size=TINY_LR))

        def latent(flat):
            z = MODEL.apply(v, flat.reshape(TINY_SHAPE), c64, method=MODEL.encode)[0]
            return z.ravel(), z

        @jax.jit
        def run(flat):
            jac, z = jax.jacfwd(latent, has_aux=True)(flat)
            return jac, z, MODEL.apply(v, flat.reshape(TINY_SHAPE), c64)

        jac, z, log_p = run(y64.ravel())
        assert log_p.dtype == jnp.float64 and np.asarray(jac).shape == (16, 16)
        _, log_abs_det = np.linalg.slogdet(np.asarray(jac))
        prior = v["params"]["flow"]["top_prior"]
        assert np.abs(np.asarray(prior["mean"])).max() > 1e-2  # a prior away from N(0, 1)
        base = stats.norm.logpdf(np.asarray(z), np.asarray(prior["mean"]),
                                 np.exp(np.asarray(prior["log_std"]))).sum()
        np.testing.assert_allclose(log_p[0], base + log_abs_det, rtol=1e-10, atol=1e-8)


def test_the_low_res_image_reaches_the_flow_and_temperature_zero_is_deterministic(variables):
    """Another x_lr changes log p(y' | x_lr) of every example and the samples for the same key
    (at T = 1 and at T = 0); at T = 0 two keys give the same image; at T = 1 they do not. One
    compiled program for every case."""
    traces = []

    @jax.jit
    def run(v, y, x_lr, key, temperature):
        traces.append(1)
        return (MODEL.apply(v, y, x_lr),
                MODEL.apply(v, key, x_lr, temperature, method=MODEL.sample))

    y, a, b = _unit(Y_SHAPE, 2), _unit(LR_SHAPE, 3), _unit(LR_SHAPE, 4)
    k1, k2 = jax.random.key(1), jax.random.key(2)
    lp_a, s_a1 = run(variables, y, a, k1, 1.0)
    lp_b, s_b1 = run(variables, y, b, k1, 1.0)
    _, s_a1k2 = run(variables, y, a, k2, 1.0)
    _, s_a0 = run(variables, y, a, k1, 0.0)
    _, s_a0k2 = run(variables, y, a, k2, 0.0)
    _, s_b0 = run(variables, y, b, k1, 0.0)
    assert len(traces) == 1
    assert np.all(np.abs(np.asarray(lp_a) - np.asarray(lp_b)) > 1e-2)
    for s in (s_a1, s_b1, s_a0):
        assert s.shape == Y_SHAPE and np.all((np.asarray(s) >= 0) & (np.asarray(s) <= 1))
    assert np.abs(np.asarray(s_a1) - np.asarray(s_b1)).max() > 1e-2
    assert np.abs(np.asarray(s_a0) - np.asarray(s_b0)).max() > 1e-2
    assert np.abs(np.asarray(s_a1) - np.asarray(s_a1k2)).max() > 1e-2
    np.testing.assert_array_equal(s_a0, s_a0k2)


def test_the_source_is_the_block_mean_of_the_clean_image():
    """x_lr of y' = (k + u) / L is the 2x2 block mean of the bin centres (k + 1/2) / L, the
    same for two draws of the dequantization noise u (it does not see u)."""
    levels = 17
    k = np.random.default_rng(0).integers(0, levels, size=Y_SHAPE).astype(np.float32)
    draws = [(k + np.random.default_rng(s).uniform(0, 1, size=k.shape)) / levels for s in (1, 2)]
    want = np.asarray(paired.downsample(jnp.asarray((k + 0.5) / levels), 2))
    for y in draws:
        np.testing.assert_allclose(sr.low_resolution(jnp.asarray(y, jnp.float32), 2, levels),
                                   want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("setting, fragments", [
    (["model.factor=3"], ("model.factor=3 must divide", "8x8", "allowed: 2, 4, 8")),
    (["model.factor=1"], ("model.factor=1 must be >= 2",)),
    (["model.num_levels=4"], ("8x8", "model.num_levels=4", "multiples of 16")),
    (["data.dequantize=false"], ("density over continuous data", "data.dequantize=true")),
    (["data.scale=symmetric"], ("data.scale=unit", "'symmetric'")),
    (["model.logit_alpha=0.5"], ("model.logit_alpha=0.5", "[0, 0.5)")),
])
def test_bad_input_is_refused_in_one_line_before_compute(setting, fragments, refused, no_compute,
                                                         tmp_path):
    args = [a for s in ["data.name=digits", *setting] for a in ("--set", s)]
    refused(["train", "cond_flow", "--workdir", str(tmp_path / "run"), *args], *fragments)
    assert not (tmp_path / "run").exists()


def test_train_and_evaluate_report_the_conditional_likelihood_and_psnr_beside_bicubic(tmp_path):
    """Two steps at the tiny size, then ``gmzoo evaluate``: the likelihood is labelled
    conditional, PSNR/SSIM of the output and of bicubic upsampling are reported, FD is finite;
    the translation's source is x_lr repeated 2x2 and its baseline is clipped bicubic."""
    recipe = zoo.get("cond_flow")
    cfg = cfglib.override(recipe.default(), [
        "data.name=digits", *recipe.tiny, "train.batch_size=16", "train.steps=2",
        "train.log_every=1", "train.checkpoint_every=2", "train.eval_every=0",
        "train.sample_every=0", "train.progress_bar=false", "eval.num_samples=16",
        "eval.max_examples=16", "eval.batch_size=16", "eval.feature_net_steps=20"])
    workdir = str(tmp_path / "run")
    zoo.train(cfg, workdir, verbose=False)
    report = zoo.evaluate(workdir, verbose=False)
    lik = report["likelihood"]["model"]
    assert "conditional" in lik["bound"] and "x_lr" in lik["bound"]
    assert np.isfinite(lik["bits_per_dim"]) and 0 < lik["bits_per_dim"] < 10
    tr = report["translation"]
    assert tr["num_test"] == 16 and tr["baseline"] == "bicubic upsampling"
    for key in ("PSNR model (dB)", "PSNR baseline (dB)", "SSIM model", "SSIM baseline"):
        assert np.isfinite(tr[key]), key
    assert np.isfinite(report["sample_quality"]["FD-digits (samples vs train)"])

    run, state = zoo.load(workdir)
    t = translate_images(run, state.ema_params, 4, seed=0)
    x_lr = sr.low_resolution(jnp.asarray(t.target), 2, run.space.num_levels)
    np.testing.assert_allclose(t.source, np.repeat(np.repeat(x_lr, 2, 1), 2, 2), atol=1e-6)
    np.testing.assert_allclose(t.baseline, np.clip(paired.bicubic_upsample(x_lr, 2), 0, 1),
                               atol=1e-6)
    # sample.temperature reaches the translations (a resumable sample option): at T = 0 two
    # seeds give the same output, at the default T = 0.8 they do not.
    cold, _ = zoo.load(workdir, overrides=["sample.temperature=0"])
    outputs = [translate_images(r, state.ema_params, 4, seed=s).output
               for r in (cold, run) for s in (0, 1)]
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert np.abs(outputs[2] - outputs[3]).max() > 1e-2
