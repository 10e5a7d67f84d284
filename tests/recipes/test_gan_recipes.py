"""dcgan, cgan and wgan_gp train through the spine (the recipe's ``train_step`` hook), checkpoint,
sample, evaluate and resume; both players learn, each on its own optimizer (D d_steps times per
step); configs the models cannot take are refused in one line before any compute."""

import json
import os

import jax
import numpy as np
import pytest

from gmzoo import config as cfglib
from gmzoo import zoo
from gmzoo.config import ConfigError
from gmzoo.zoo import evaluate
from gmzoo.train.loop import heldout_metrics, init_state, sample_images
from gmzoo.zoo import load_run, setup, train
from player_state import changed, counts

TINY = ["data.name=digits", "model.latent_dim=8", "model.features=4", "model.label_features=4",
        "train.batch_size=16", "train.steps=2", "train.log_every=1", "train.checkpoint_every=2",
        "train.eval_every=0", "train.sample_every=0", "train.progress_bar=false",
        "eval.num_samples=16", "eval.max_examples=16", "eval.batch_size=16",
        "eval.feature_net_steps=20"]
NAMES = ["dcgan", "cgan", "wgan_gp"]


def tiny(name, extra=()):
    return cfglib.override(zoo.get(name).default(), TINY + list(extra))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """name -> (workdir, initial state, state after a 2-step run), trained once per module."""
    root = tmp_path_factory.mktemp("gan")
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
    """Both players and their running averages change; each optimizer advanced by its own
    number of updates (one G update and d_steps D updates per step)."""
    _, start, state = trained(name)
    m = tiny(name).model
    assert int(jax.device_get(state.step)) == 2
    for player in ("generator", "discriminator"):
        assert changed(start.params[player], state.params[player]), player
    assert counts(state.opt_state["generator"]) == {2}
    assert counts(state.opt_state["discriminator"]) == {2 * m.d_steps}
    assert changed(start.ema_params["generator"], state.ema_params["generator"])
    assert set(state.model_state) == ({"generator", "discriminator"} if m.batch_norm
                                      else {"generator"})
    for player in state.model_state:
        assert changed(start.model_state[player], state.model_state[player]), player


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_samples_and_heldout_metrics(name, trained):
    workdir, _, state = trained(name)
    run, restored = load_run(workdir)
    assert int(jax.device_get(restored.step)) == 2
    assert not changed(restored.params, state.params)
    assert not changed(restored.model_state, state.model_state)
    images = sample_images(run, restored.ema_params, 5, seed=0)
    assert images.shape == (5, 8, 8, 1)
    assert np.all(np.isfinite(images)) and np.all((images >= 0) & (images <= 1))
    assert images.std() > 0
    metrics = heldout_metrics(run, restored.ema_params, limit=16)
    assert {"loss", "d_loss", "g_loss", "d_real_score", "d_fake_score"} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())
    assert ("d_gradient_penalty" in metrics) == (name == "wgan_gp")
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert [r["step"] for r in rows] == [1, 2]
    assert {"d_loss", "g_loss", "loss", "d_grad_norm", "g_grad_norm"} <= set(rows[-1])


# The evaluator's code is one for every adversarial row (cgan's labelled sampling is checked
# below, wgan_gp's held-out penalty above): one row runs it whole.
def test_evaluate_reports_fd_and_kid(trained):
    report = evaluate(trained("dcgan")[0], verbose=False)
    quality = report["sample_quality"]
    assert np.isfinite(quality["FD-digits (samples vs train)"])
    assert np.isfinite(quality["KID-digits (samples vs train)"])
    assert np.isfinite(report["heldout"]["d_loss"])



def test_conditional_generator_follows_the_label():
    """cgan draws classes 0..K-1 in turn: the same z with other labels gives other images."""
    run = setup(tiny("cgan"))
    state = init_state(run)
    a = run.sample_fn(True)(state.ema_params, jax.random.key(0), 10)
    assert a.shape == (10, 8, 8, 1)
    assert not np.allclose(a[0], a[1])


def test_conditional_sampler_draws_the_requested_class(trained, tmp_path):
    """`gmzoo sample --class 3` gives G(z, 3) for every z: a class-3 sampler's images equal the
    in-turn sampler's images at the rows it gives class 3 (rows 3, 13), for the same key."""
    from gmzoo.cli import main

    workdir = trained("cgan")[0]
    run, state = load_run(workdir)
    in_turn = run.sample_fn(True)(state.ema_params, jax.random.key(0), 20)
    run3, _ = load_run(workdir, overrides=["sample.class_label=3"])
    only3 = run3.sample_fn(True)(state.ema_params, jax.random.key(0), 20)
    np.testing.assert_allclose(only3[3], in_turn[3], atol=1e-5)
    np.testing.assert_allclose(only3[13], in_turn[13], atol=1e-5)
    assert not np.allclose(only3[4], in_turn[4])  # row 4 was class 4
    out = tmp_path / "three.png"
    main(["sample", "--workdir", workdir, "--class", "3", "--n", "4", "--out", str(out)])
    assert out.exists()


@pytest.mark.parametrize("name, extra, words", [
    ("dcgan", ["model.loss=wasserstien"], "model.loss"),
    ("dcgan", ["data.scale=unit"], "data.scale=symmetric"),
    ("dcgan", ["data.binarize=dynamic"], "data.binarize=none"),
    ("wgan_gp", ["model.batch_norm=true"], "model.batch_norm=false"),
    ("dcgan", ["model.gp_weight=10"], "model.batch_norm=false"),
    ("dcgan", ["model.conditioning=film"], "model.conditioning"),
    ("dcgan", ["model.d_steps=0"], "model.d_steps"),
    ("cgan", ["model.num_classes=5"], "model.num_classes=10"),
    ("cgan", ["sample.steps=3"], "has no option 'sample.steps'"),
    ("dcgan", ["sample.class_label=3"], "unconditional"),
    ("cgan", ["sample.class_label=10"], "classes 0..9"),
])
def test_refusals_are_one_line_and_before_compute(name, extra, words, tmp_path):
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError) as e:
        train(tiny(name, extra), str(workdir), verbose=False)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert not workdir.exists()


def test_image_shape_the_dcgan_plan_cannot_make():
    recipe = zoo.get("dcgan")
    with pytest.raises(ConfigError) as e:
        recipe.check(tiny("dcgan"), (10, 10, 1))
    assert "divisible by 4" in str(e.value) and "\n" not in str(e.value)
    recipe.check(cfglib.override(tiny("dcgan"), ["data.name=mnist5k"]), (28, 28, 1))
