"""Every diffusion model trains, samples with every sampler it lists, and evaluates, through the
spine; sampler options it cannot take are refused before any compute."""

import jax
import numpy as np
import pytest

from gmzoo import config as cfglib
from gmzoo import zoo

from gmzoo.zoo import evaluate, sampler_sweep
from gmzoo.train.loop import heldout_metrics, sample_images
from gmzoo.zoo import load_run, setup, train

TINY = ["data.name=digits", "model.base_channels=8", "model.num_groups=4",
        "model.channel_mults=(1,)", "model.attention_resolutions=()", "train.batch_size=16",
        "train.steps=2", "train.log_every=1", "train.checkpoint_every=2", "train.eval_every=0",
        "train.sample_every=0", "train.progress_bar=false", "eval.num_samples=16",
        "eval.max_examples=16", "eval.batch_size=16", "eval.ode_steps=2", "eval.vlb_timesteps=4",
        "eval.feature_net_steps=20", "sample.steps=3"]
DISCRETE = ["model.num_steps=20"]
EXTRA = {"ddpm": DISCRETE, "ddpm_cond": DISCRETE + ["model.classifier_channels=8"],
         "cascaded": DISCRETE + ["model.low_channel_mults=(1,)", "model.low_attention_resolutions=()"]}


def tiny(name, extra=()):
    return cfglib.override(zoo.get(name).default(), TINY + EXTRA.get(name, []) + list(extra))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """name -> workdir of a 2-step run, trained once per module."""
    root = tmp_path_factory.mktemp("diffusion")
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = str(root / name)
            train(tiny(name), cache[name], verbose=False)
        return cache[name]

    return get


def _check_images(images, n):
    assert images.shape == (n, 8, 8, 1)
    assert np.all(np.isfinite(images)) and np.all((images >= 0) & (images <= 1))


# Every row trains, samples with its default sampler and reports a held-out loss in the model
# table's contract test (tests/test_model_table.py), score models with the PC sampler; here
# every sampler runs through the spine on ddpm (every discrete model shares its sampling code,
# and the SDE solvers run on the VP SDE its schedule discretises).
def test_every_sampler_through_the_spine(trained):
    name = "ddpm"
    run, state = load_run(trained(name))
    assert int(jax.device_get(state.step)) == 2
    metrics = heldout_metrics(run, state.ema_params, limit=16)
    assert metrics and all(np.isfinite(v) for v in metrics.values())
    assert len(zoo.get(name).samplers) >= 4
    for sampler in zoo.get(name).samplers:
        r = setup(cfglib.override(run.config, [f"sample.sampler={sampler}", "sample.steps=0"
                                               if sampler == "ddpm" else "sample.steps=2"]))
        _check_images(sample_images(r, state.ema_params, 3, seed=0, mean=False), 3)


def test_guidance_of_the_conditional_model(trained):
    run, state = load_run(trained("ddpm_cond"))
    for setting in (["sample.guidance=2", "sample.class_label=3"],
                    ["sample.guide=classifier", "sample.guidance=1", "sample.class_label=1"],
                    ["sample.guide=classifier", "sample.guidance=1", "sample.sampler=pc",
                     "sample.steps=2"]):
        r = setup(cfglib.override(run.config, setting))
        _check_images(sample_images(r, state.ema_params, 4, seed=0, mean=False), 4)


def test_evaluate_reports_the_bound_and_the_ode_likelihood(trained):
    report = evaluate(trained("ddpm"), verbose=False)
    labels = [m["bound"] for m in report["likelihood"]["models"]]
    assert any("variational bound" in x for x in labels) and any("PF-ODE" in x for x in labels)
    for m in report["likelihood"]["models"]:
        assert np.isfinite(m["nll_nats"]) and m["bits_per_dim"] > 0
    assert report["sampler"]["sampler"] == "ddim"
    rows = sampler_sweep(trained("ddpm"), ["ddim:2", "ode:1,ode_method=euler"], verbose=False)
    assert [r["sampler"] for r in rows] == ["ddim:2", "ode:1,ode_method=euler"]


def test_score_model_reports_the_ode_likelihood(trained):
    report = evaluate(trained("score_ve"), verbose=False)
    (m,) = report["likelihood"]["models"]
    assert "PF-ODE" in m["bound"] and np.isfinite(m["nll_nats"])


@pytest.mark.parametrize("autoencoder,data", [
    ("ae", ["data.scale=symmetric"]), ("vae", ["data.binarize=fixed"])])
def test_latent_diffusion_keeps_the_autoencoder_frozen(tmp_path, autoencoder, data):
    ae_dir = str(tmp_path / "ae")
    ae_cfg = cfglib.override(zoo.get(autoencoder).default(), data + [
        "data.name=digits", "model.hidden=(16,)", "model.latent_dim=4",
        "train.batch_size=16", "train.steps=2", "train.checkpoint_every=2", "train.eval_every=0",
        "train.sample_every=0", "train.progress_bar=false"])
    ae_state = train(ae_cfg, ae_dir, verbose=False)
    cfg = cfglib.override(zoo.get("latent_ddpm").default(), [
        f"model.autoencoder={ae_dir}", "data.name=digits", *data,
        "model.hidden=(16,)", "model.num_steps=20", "train.batch_size=16", "train.steps=3",
        "train.checkpoint_every=3", "train.eval_every=0", "train.sample_every=0",
        "train.progress_bar=false", "sample.steps=2"])
    state = train(cfg, str(tmp_path / "ldm"), verbose=False)
    frozen = jax.device_get(state.params["frozen"]["autoencoder"])
    for a, b in zip(jax.tree.leaves(frozen), jax.tree.leaves(jax.device_get(ae_state.ema_params))):
        np.testing.assert_array_equal(a, b)
    assert np.all(np.asarray(state.params["frozen"]["std"]) > 0)
    _check_images(sample_images(setup(cfg), state.ema_params, 3, seed=0), 3)


@pytest.mark.parametrize("model,setting,fragment", [
    ("ddpm", "data.scale=unit", "data.scale=symmetric"),
    ("ddpm", "model.schedule=sigmoid", "choose one of linear, cosine"),
    ("ddpm", "model.prediction=score", "choose one of eps, x0, v"),
    ("ddpm", "sample.sampler=heun", "takes ddpm, ddim, em, rd, pc, ode"),
    ("ddpm", "sample.guidance=2", "needs a class-conditional model"),
    ("ddpm", "sample.class_label=3", "this model is unconditional"),
    ("ddpm_cond", "sample.class_label=10", "classes 0..9"),
    ("ddpm", "sample.steps=2000", "ddim takes at most T=1000 steps"),
    ("ddpm", "model.channel_mults=(1,2,2,2,2)", "U-Net for images (8, 8, 1)"),
    ("ddpm_cond", "model.num_classes=7", "digits has 10 classes"),
    ("score_vp", "sample.sampler=ddim", "takes pc, em, rd, ode"),
    ("score_ve", "model.sigma_max=0.001", "score_ve"),
    ("cascaded", "model.factor=3", "must be >= 2 and divide"),
    ("vae", "sample.sampler=ddim", "has one sampler"),
    ("latent_ddpm", "data.name=digits", "is not a trained run"),
])
def test_refusals_before_compute(refused, capsys, no_compute, tmp_path, model, setting, fragment):
    refused(["train", model, "--workdir", str(tmp_path / "w"), "--set", "data.name=digits",
                      "--set", setting], fragment)


def test_sample_and_sweep_refusals(refused, capsys, trained):
    workdir = trained("ddpm")
    refused(["sample", "--workdir", workdir, "--sampler", "em", "--class", "2"],
             "this model is unconditional")
    refused(["evaluate", "--workdir", workdir, "--sweep", "ddim:2", "eta=1"],
             "expected SAMPLER[:STEPS]")
    refused(["evaluate", "--workdir", workdir, "--sweep", "ddim:2", "ddim:5,eta=3"],
             "sample.eta=3.0 must be in [0, 1]")


def test_latent_diffusion_refuses_mismatched_data(refused, capsys, trained, tmp_path):
    ae_dir = trained("ddpm")  # a run that is not an autoencoder
    refused(["train", "latent_ddpm", "--workdir", str(tmp_path / "w"),
                      "--set", f"model.autoencoder={ae_dir}"], "latent diffusion takes one of")
