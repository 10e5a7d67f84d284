"""The spine's image-to-image path (``Recipe.translate``) with a one-layer toy model: training
grids of source | output | target, ``gmzoo sample``, and ``gmzoo evaluate``'s PSNR / SSIM and
FD / KID of translations, checked against direct computations. (The real models, pix2pix, srgan
and cyclegan, are tested in tests/recipes/.)"""

import dataclasses

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from gmzoo import zoo
from gmzoo.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from gmzoo.metrics import image
from gmzoo.recipes.base import Recipe, Translation
from gmzoo.train.evaluate import ssim_window
from gmzoo.zoo import evaluate
from gmzoo.train.loop import sample_images, translate_images
from gmzoo.zoo import load_run, train


@dataclasses.dataclass(frozen=True)
class FlipConfig:
    """Learns to undo a horizontal flip with one 1x1 convolution (it cannot: the baseline,
    the flipped input itself, and the output are both wrong, which is all this test needs)."""
    name: str = "toy_flip"


class OneByOne(nn.Module):
    @nn.compact
    def __call__(self, x):
        return jnp.tanh(nn.Conv(1, (1, 1))(x))


def _translate(m, module, *, sampling=None):
    def fn(params, batch, key):
        del key
        target = batch["image"]  # [B, H, W, C] in [-1, 1]
        source = target[:, :, ::-1]
        return Translation(source=source, output=module.apply({"params": params}, source),
                           target=target, baseline=source)
    return fn


def _loss(m, module):
    translate = _translate(m, module)

    def loss_fn(params, batch, key):
        t = translate(params, batch, key)
        loss = jnp.mean(jnp.square(t.output - t.target))
        return loss, {"mse": loss}
    return loss_fn


TOY = Recipe(
    name="toy_flip", description="test only", config_cls=FlipConfig,
    default=lambda: ExperimentConfig(
        model=FlipConfig(), data=DataConfig(name="digits", scale="symmetric"),
        optim=OptimConfig(learning_rate=1e-2),
        train=TrainConfig(steps=2, batch_size=16, log_every=1, checkpoint_every=2, eval_every=0,
                          sample_every=2, progress_bar=False),
        eval=EvalConfig(num_samples=40, max_examples=50, batch_size=20, feature_net_steps=20)),
    build=lambda m, shape, levels: OneByOne(),
    check=lambda config, shape: None,
    init=lambda module, key, batch: module.init(key, batch["image"]),
    loss=_loss, sampler=None, translate=_translate, baseline="the flipped input")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setitem(zoo.MODELS, TOY.name, TOY)
    workdir = str(tmp_path_factory.mktemp("translate") / "run")
    state = train(TOY.default(), workdir, verbose=False)
    yield workdir, state
    mp.undo()


def test_training_grid_holds_source_output_target_triples(trained):
    workdir, _ = trained
    grid = np.asarray(Image.open(f"{workdir}/samples/step_0000002.png"))
    # 64 triples, 5 triples (15 images) per row, 13 rows; 8x8 images, pad 1, scale 16
    assert grid.shape == ((13 * 9 + 1) * 16, (15 * 9 + 1) * 16)


def test_translations_are_the_first_test_examples(trained):
    workdir, state = trained
    run, restored = load_run(workdir)
    t = translate_images(run, restored.ema_params, 30, seed=0)
    assert all(a.shape == (30, 8, 8, 1) for a in t)
    test01 = np.concatenate([run.test_source.get_batch(np.arange(30))["image"]]) / 16.0
    np.testing.assert_allclose(t.target, test01, atol=1e-6)
    np.testing.assert_allclose(t.source, test01[:, :, ::-1], atol=1e-6)
    np.testing.assert_allclose(sample_images(run, restored.ema_params, 30, seed=0), t.output)


def test_evaluate_reports_psnr_ssim_and_fd_of_translations(trained):
    workdir, _ = trained
    run, restored = load_run(workdir)
    report = evaluate(workdir, verbose=False)
    tr = report["translation"]
    t = translate_images(run, restored.ema_params, 50, seed=0)
    window = ssim_window((8, 8))
    assert window == {"filter_size": 7, "filter_sigma": 0.8}
    want_model = float(np.mean(image.psnr(t.output, t.target)))
    want_base = float(np.mean(image.psnr(t.baseline, t.target)))
    assert tr["num_test"] == 50 and tr["baseline"] == "the flipped input"
    np.testing.assert_allclose(tr["PSNR model (dB)"], want_model, rtol=1e-5)
    np.testing.assert_allclose(tr["PSNR baseline (dB)"], want_base, rtol=1e-5)
    np.testing.assert_allclose(tr["SSIM baseline"],
                               float(np.mean(image.ssim(t.baseline, t.target, **window))), rtol=1e-5)
    share = tr["share of images where the model's PSNR beats the baseline's"]
    assert 0.0 <= share <= 1.0
    quality = report["sample_quality"]
    assert quality["num_samples"] == 40
    assert np.isfinite(quality["FD-digits (samples vs train)"])


def test_gmzoo_sample_writes_triples(trained, tmp_path):
    from gmzoo.cli import main

    mp = pytest.MonkeyPatch()
    mp.setitem(zoo.MODELS, TOY.name, TOY)
    try:
        out = tmp_path / "t.png"
        main(["sample", "--workdir", trained[0], "--n", "3", "--out", str(out)])
    finally:
        mp.undo()
    grid = np.asarray(Image.open(out))
    # ceil(sqrt(3 / 3)) = 1 triple per row: three rows of source | output | target
    assert grid.shape == ((3 * 9 + 1) * 16, (3 * 9 + 1) * 16)
