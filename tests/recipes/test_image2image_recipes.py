"""pix2pix and srgan train through the spine (the recipe's ``train_step`` hook, two players on
their own optimizers), translate batches whose source really is the task's input, refuse configs
they cannot take in one line before any compute, and learn to beat their baseline."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo import config as cfglib
from gmzoo import zoo
from gmzoo.config import ConfigError
from gmzoo.data import paired
from gmzoo.data.pipeline import ordered_batches
from gmzoo.metrics import image
from gmzoo.recipes.base import Translation

from gmzoo.train.loop import heldout_metrics, init_state
from gmzoo.zoo import setup, train
from player_state import changed, counts

COMMON = ["data.name=digits", "train.batch_size=16", "train.steps=2", "train.log_every=1",
          "train.checkpoint_every=2", "train.eval_every=0", "train.sample_every=0",
          "train.progress_bar=false", "eval.num_samples=16", "eval.max_examples=16",
          "eval.batch_size=16", "eval.feature_net_steps=20"]
TINY = {"pix2pix": ["model.features=4", "model.d_features=4"],
        "srgan": ["model.factor=2", "model.features=4", "model.num_blocks=1",
                  "model.d_features=4", "model.d_dense=8"]}
NAMES = ["pix2pix", "srgan"]


def tiny(name, extra=()):
    return cfglib.override(zoo.get(name).default(), COMMON + TINY[name] + list(extra))






def _test_batch(run, n=16):
    batch = next(iter(ordered_batches(run.test_source, n, n)))
    return run.space.prepare(batch, jax.random.key(0))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """name -> (workdir, initial state, state after a 2-step run), trained once per module."""
    root = tmp_path_factory.mktemp("i2i")
    cache = {}

    def get(name):
        if name not in cache:
            config, workdir = tiny(name), str(root / name)
            start = init_state(setup(config))
            cache[name] = workdir, start, train(config, workdir, verbose=False)
        return cache[name]

    return get


@pytest.mark.parametrize("name", NAMES)
def test_both_players_learn_on_their_own_optimizers(name, trained):
    _, start, state = trained(name)
    assert int(jax.device_get(state.step)) == 2
    for player in ("generator", "discriminator"):
        assert changed(start.params[player], state.params[player]), player
        assert counts(state.opt_state[player]) == {2}, player  # one update per step each
        assert changed(start.model_state[player], state.model_state[player]), player  # BN
    assert changed(start.ema_params["generator"], state.ema_params["generator"])
    if name == "pix2pix":  # the PatchGAN judges (source, image) pairs: C + 1 + C channels in
        assert state.params["discriminator"]["conv_0"]["kernel"].shape[2] == 3


@pytest.mark.parametrize("name, recon, weights", [("pix2pix", "l1", (1.0, 100.0)),
                                                  ("srgan", "mse", (1e-3, 1.0))])
def test_heldout_loss_is_the_generators_objective(name, recon, weights, trained):
    """pix2pix: g_loss + 100 L1 (Isola eq. 4); srgan: MSE + 1e-3 g_loss (Ledig eq. 3)."""
    workdir, _, state = trained(name)
    m = heldout_metrics(setup(tiny(name)), state.ema_params, limit=16)
    adv_w, recon_w = weights
    np.testing.assert_allclose(m["loss"], adv_w * m["g_adversarial"] + recon_w * m[f"g_{recon}"],
                               rtol=1e-5)
    assert np.isfinite(m["d_loss"]) and m[f"g_{recon}"] > 0


def _square_holes(source, target, side):
    """True where each image equals ``target`` except on one side x side square set to -1."""
    ok = []
    for s, t in zip(source[..., 0], target[..., 0]):
        h, w = s.shape
        ok.append(any(np.all(s[i:i + side, j:j + side] == -1.0) and np.array_equal(
            np.delete(np.delete(s, range(i, i + side), 0), range(j, j + side), 1),
            np.delete(np.delete(t, range(i, i + side), 0), range(j, j + side), 1))
            for i in range(h - side + 1) for j in range(w - side + 1)))
    return np.array(ok)


@pytest.mark.parametrize("name", NAMES)
def test_translate_shows_the_task_input_as_source(name, trained):
    _, _, state = trained(name)
    config = tiny(name)
    run = setup(config)
    batch = _test_batch(run)
    fn = jax.jit(run.recipe.translate(config.model, run.module))
    t = fn(state.ema_params, batch, jax.random.key(3))
    assert isinstance(t, Translation)
    x = np.asarray(batch["image"])
    for a in t:
        assert a.shape == x.shape and np.all(np.isfinite(a)) and np.all(np.abs(a) <= 1.0)
    np.testing.assert_array_equal(t.target, x)
    source, output = np.asarray(t.source), np.asarray(t.output)
    assert not np.allclose(output, source)
    if name == "pix2pix":  # inpaint: the image with one s x s square set to -1
        side = paired.mask_side(8, 8, config.model.mask_fraction)
        assert side == 4
        assert np.all(_square_holes(source, x, side))
        assert np.any(source != x)  # some hole covers a stroke
        np.testing.assert_array_equal(t.baseline, source)  # the input unchanged
    else:  # the low-resolution input, each pixel repeated f x f times
        f = config.model.factor
        low = np.asarray(paired.downsample(jnp.asarray(x), f))
        np.testing.assert_allclose(paired.downsample(jnp.asarray(source), f), low, atol=1e-6)
        np.testing.assert_array_equal(source[:, ::f, ::f], low)
        np.testing.assert_array_equal(source, np.repeat(np.repeat(low, f, 1), f, 2))
        want = np.clip(paired.bicubic_upsample(jnp.asarray(low), f), -1, 1)
        np.testing.assert_allclose(t.baseline, want, atol=1e-6)
        assert not np.allclose(t.baseline, source)


@pytest.mark.parametrize("task", ["invert", "edges", "denoise"])
def test_pix2pix_source_of_each_task(task):
    config = tiny("pix2pix", [f"model.task={task}"])
    run = setup(config)
    state = init_state(run)
    batch = _test_batch(run)
    t = run.recipe.translate(config.model, run.module)(state.ema_params, batch, jax.random.key(0))
    x, source = np.asarray(batch["image"]), np.asarray(t.source)
    assert all(a.shape == x.shape for a in t)
    if task == "invert":
        np.testing.assert_array_equal(source, -x)
    elif task == "edges":
        want = np.where(paired.sobel_magnitude(x) > config.model.edge_threshold, 1.0, -1.0)
        np.testing.assert_array_equal(source, want)
    else:
        noise = source - x
        assert np.all(np.abs(source) <= 1.0) and 0.1 < noise[np.abs(source) < 1].std() < 0.3


@pytest.mark.parametrize("name, extra, words", [
    ("pix2pix", ["model.task=colorize"], "inpaint, invert, edges, denoise"),
    ("pix2pix", ["model.loss=wasserstien"], "non_saturating"),
    ("pix2pix", ["model.norm=layer"], "batch, instance"),
    ("pix2pix", ["model.features=0"], "model.features=0 must be >= 1"),
    ("pix2pix", ["model.l1_weight=-1"], "model.l1_weight=-1"),
    ("pix2pix", ["model.mask_fraction=0"], "(0, 1]"),
    ("pix2pix", ["model.dropout_rate=1"], "[0, 1)"),
    ("pix2pix", ["model.d_layers=2"], "model.d_layers <= 1"),
    ("pix2pix", ["model.max_depth=1"], "divisible by 4"),
    ("pix2pix", ["data.scale=unit"], "data.scale=symmetric"),
    ("pix2pix", ["data.binarize=dynamic"], "data.binarize=none"),
    ("srgan", ["model.factor=3"], "choose one of 2, 4"),
    ("srgan", ["model.factor=4", "data.name=mnist5k"], None),  # 28 / 4: fits
    ("srgan", ["model.content=vgg"], "mse"),
    ("srgan", ["model.adversarial_weight=-0.1"], "model.adversarial_weight"),
    ("srgan", ["model.d_dense=0"], "model.d_dense=0 must be >= 1"),
    ("srgan", ["model.d_learning_rate=0"], "model.d_learning_rate"),
    ("srgan", ["data.scale=unit"], "data.scale=symmetric"),
])
def test_refusals_are_one_line_and_before_compute(name, extra, words, tmp_path):
    config = tiny(name, extra)
    if words is None:
        zoo.get(name).check(config, (28, 28, 1))
        return
    with pytest.raises(ConfigError) as e:
        setup(config)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_factor_must_divide_the_image():
    recipe = zoo.get("srgan")
    with pytest.raises(ConfigError) as e:
        recipe.check(tiny("srgan", ["model.factor=4"]), (10, 10, 1))
    assert "must divide" in str(e.value) and "10x10" in str(e.value)
    with pytest.raises(ConfigError) as e:
        zoo.get("pix2pix").check(tiny("pix2pix"), (10, 10, 1))
    assert "divisible by 4" in str(e.value) and "\n" not in str(e.value)


def _psnr(run, params, batch):
    t = run.recipe.translate(run.config.model, run.module)(params, batch, jax.random.key(7))
    to01 = lambda a: (a + 1.0) / 2.0  # noqa: E731
    return (float(jnp.mean(image.psnr(to01(t.output), to01(t.target)))),
            float(jnp.mean(image.psnr(to01(t.baseline), to01(t.target)))))


def test_srgan_learns_to_beat_bicubic_upsampling(tmp_path):
    """x2 on digits (4x4 -> 8x8) with the tiny networks of the other tests: the untrained
    generator is far below bicubic upsampling, 400 steps put it clearly above on held-out
    images (+2 dB on this seed)."""
    config = tiny("srgan", ["train.steps=400", "train.log_every=400",
                            "train.checkpoint_every=400"])
    run = setup(config)
    batch = _test_batch(run, 120)
    before, baseline = _psnr(run, init_state(run).ema_params, batch)
    assert before < baseline - 3.0, (before, baseline)
    state = train(config, str(tmp_path / "run"), verbose=False)
    after, _ = _psnr(run, state.ema_params, batch)
    assert after > baseline + 1.0, (before, after, baseline)


def test_evaluate_reports_psnr_and_ssim_beside_the_baseline(trained):
    workdir, _, _ = trained("pix2pix")
    report = zoo.evaluate(workdir, verbose=False)
    tr = report["translation"]
    assert tr["num_test"] == 16 and "source unchanged" in tr["baseline"]
    for key in ("PSNR model (dB)", "PSNR baseline (dB)", "SSIM model", "SSIM baseline"):
        assert np.isfinite(tr[key]), key
    assert np.isfinite(report["sample_quality"]["FD-digits (samples vs train)"])
