"""The RBM recipes on the spine: refusals before any compute, CD and PCD training on digits with
the persistent chains in the train state (resumed to the bit), the Gibbs sampler hook, and the
likelihood and report hooks (AIS beside the exact NLL)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo import config as cfglib
from gmzoo import zoo
from gmzoo.families.rbm import family, rbm
from gmzoo.train.loop import heldout_metrics, init_state, sample_images

TINY = ["data.name=digits", "model.num_hidden=8", "train.batch_size=32", "train.steps=4",
        "train.log_every=2", "train.checkpoint_every=2", "train.sample_every=0",
        "train.progress_bar=false", "eval.ais_betas=1000", "eval.ais_chains=50",
        "sample.gibbs_steps=20"]


def tiny(name, extra=()):
    return cfglib.override(zoo.get(name).default(), TINY + list(extra))


def test_defaults():
    cfg = zoo.get("rbm").default()
    assert (cfg.data.name, cfg.data.binarize) == ("mnist5k", "dynamic")
    assert (cfg.model.num_hidden, cfg.model.method, cfg.train.batch_size) == (500, "cd", 100)
    assert isinstance(cfg.eval, family.RBMEvalConfig) and isinstance(cfg.sample, family.RBMSampleConfig)
    assert zoo.get("rbm_pcd").default().model.method == "pcd"


@pytest.mark.parametrize("setting, fragments", [
    ("data.binarize=none", ("data.binarize='none'", "binary", "data.binarize=dynamic")),
    ("model.method=cd3", ("model.method", "cd, pcd")),
    ("eval.ais_chains=1", ("eval.ais_chains", ">= 2")),
    ("sample.steps=10", ("sample.steps", "sample.gibbs_steps")),
])
def test_bad_input_is_refused_in_one_line_before_compute(setting, fragments, refused, no_compute,
                                                         tmp_path):
    refused(["train", "rbm", "--workdir", str(tmp_path / "run"), "--set", setting], *fragments)


def test_cd_trains_and_reports_heldout_metrics(tmp_path):
    cfg = tiny("rbm", ["model.gibbs_steps=2"])
    run = zoo.setup(cfg)
    # b starts at the log-odds of the first training batch's marginals (Hinton 2010).
    b0 = np.asarray(jax.device_get(init_state(run).params["b"]))
    batch = run.space.prepare({"image": jnp.asarray(run.train_source.images[:32], jnp.float32)},
                              jax.random.key(0))["image"]
    assert np.corrcoef(b0, rbm.base_rate_logits(batch))[0, 1] > 0.9
    state = zoo.train(cfg, str(tmp_path / "cd"), verbose=False)
    assert not state.model_state  # CD keeps no chains
    m = heldout_metrics(run, state.ema_params, limit=64)
    assert set(m) == {"loss", "free_energy_data", "free_energy_model", "free_energy_gap",
                      "reconstruction_error"} and all(np.isfinite(list(m.values())))
    np.testing.assert_allclose(m["loss"], m["free_energy_gap"], rtol=1e-5)


def test_pcd_chains_live_in_the_train_state_and_resume_to_the_bit(tmp_path):
    cfg = tiny("rbm_pcd", ["model.num_chains=16"])
    straight = zoo.train(cfg, str(tmp_path / "straight"), verbose=False)
    chains = np.asarray(jax.device_get(straight.model_state["chains"]["v"]))
    assert chains.shape == (16, 64) and set(np.unique(chains)) <= {0.0, 1.0}
    workdir = str(tmp_path / "resumed")
    zoo.train(cfgl := cfglib.override(cfg, ["train.steps=2"]), workdir, verbose=False)
    resumed = zoo.train(cfglib.override(cfgl, ["train.steps=4"]), workdir, resume=True, verbose=False)
    for a, b in zip(jax.tree.leaves(jax.device_get((straight.params, straight.model_state))),
                    jax.tree.leaves(jax.device_get((resumed.params, resumed.model_state)))):
        np.testing.assert_array_equal(a, b)


def test_sampler_hook_at_zero_weights_draws_the_visible_biases():
    """W = 0: every Gibbs step draws v ~ Bernoulli(sigmoid(b)), whatever the start."""
    m = family.RBMConfig(num_hidden=3)
    module = family._build(m, (2, 2, 1), 2)
    b = jnp.array([-2.0, -0.5, 0.5, 2.0])
    params = {"W": jnp.zeros((4, 3)), "b": b, "c": jnp.ones(3)}
    for start in ("bias", "uniform"):
        sampling = family.RBMSampleConfig(gibbs_steps=3, start=start)
        draw = jax.jit(family._sampler(m, module, mean=False, sampling=sampling), static_argnums=2)
        x = draw(params, jax.random.key(0), 4000)
        assert x.shape == (4000, 2, 2, 1) and set(np.unique(np.asarray(x))) <= {0.0, 1.0}
        np.testing.assert_allclose(x.reshape(-1, 4).mean(0), jax.nn.sigmoid(b), atol=0.03)
        mean = family._sampler(m, module, mean=True, sampling=sampling)(params, jax.random.key(0), 5)
        np.testing.assert_allclose(mean.reshape(-1, 4), jnp.broadcast_to(jax.nn.sigmoid(b), (5, 4)),
                                   rtol=1e-6)


def test_likelihood_and_report_hooks_agree_with_the_exact_nll(tmp_path):
    """A 64 x 8 RBM with weights of a trained one's scale (std 0.5) and visible biases at the
    data's base rates: the AIS rows (the table's,
    base from the test batch; the report's, base from the training marginals) are within 0.1
    nats of the exact NLL, and the report names what the loss is."""
    cfg = tiny("rbm")
    run = zoo.setup(cfg)
    rng = np.random.default_rng(0)
    train = run.space.prepare({"image": jnp.asarray(run.train_source.images, jnp.float32)},
                              jax.random.key(0))["image"]
    params = {"W": jnp.asarray(rng.normal(size=(64, 8)) * 0.5, jnp.float32),
              "b": rbm.base_rate_logits(train),
              "c": jnp.asarray(rng.normal(size=8), jnp.float32)}
    images = sample_images(run, params, 4, seed=0)
    assert images.shape == (4, 8, 8, 1) and np.all((images >= 0) & (images <= 1))
    x = run.space.prepare({"image": jnp.asarray(run.test_source.images, jnp.float32)},
                          jax.random.key(1))["image"]
    fns = run.recipe.likelihoods(cfg.model, run.module, cfg.eval)
    assert list(fns) == ["exact", "AIS (50 chains, 1000 betas)"]
    exact, ais = (float(jnp.mean(jax.jit(f)(params, x, jax.random.key(2)))) for f in fns.values())
    assert abs(exact - ais) < 0.1, (exact, ais)
    out_dir = str(tmp_path / "eval")
    os.makedirs(out_dir)
    lines = run.recipe.report(run, params, out_dir)
    assert abs(lines["test NLL nats (AIS)"] - lines["test NLL nats (exact)"]) < 0.1
    assert abs(lines["log Z (AIS)"] - lines["log Z (exact)"]) < 0.1
    assert lines["log Z - 3 sd (AIS)"] < lines["log Z (AIS)"] < lines["log Z + 3 sd (AIS)"]
    assert 0 < lines["test NLL standard error nats"] < 5
    assert "not a likelihood" in lines["training loss"]
    assert os.path.exists(lines["filters"])
