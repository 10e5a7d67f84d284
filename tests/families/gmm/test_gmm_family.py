"""The Gaussian-mixture recipes on the spine (gmzoo.families.gmm.family): refusals before any
compute, one EM iteration per step (over several dequantization draws), the report's BIC/AIC
against scikit-learn's, the whitened variant's density of the raw data, monotone EM on the toy
points and the guard on a failed Cholesky factorisation."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

from gmzoo import config as cfglib
from gmzoo import zoo
from gmzoo.data.pipeline import ordered_batches
from gmzoo.families.gmm import em, family
from gmzoo.train import artifacts
from gmzoo.train.evaluate import likelihood_report
from gmzoo.train.loop import init_state, optimizer_and_step
from gmzoo.train.optim import FROZEN

QUIET = ["train.progress_bar=false", "train.eval_every=0", "train.sample_every=0"]
TINY = QUIET + ["model.num_components=3", "model.noise_draws=2", "model.kmeans_steps=2",
                "train.steps=3", "train.log_every=1", "train.checkpoint_every=3",
                "eval.num_samples=32", "eval.max_examples=64", "eval.feature_net_steps=20"]


def tiny(name, extra=()):
    return cfglib.override(zoo.get(name).default(), TINY + list(extra))


def test_defaults():
    cfg = zoo.get("gmm").default()
    assert (cfg.data.name, cfg.data.dequantize, cfg.train.batch_size) == ("digits", True, 1437)
    assert (cfg.model.num_components, cfg.model.covariance_type, cfg.model.reg_covar,
            cfg.model.noise_draws) == (10, "full", 1e-6, 8)
    toy = zoo.get("gmm_toy").default()
    assert (toy.data.name, toy.train.batch_size, toy.model.num_components) == ("ring8", 10_000, 8)
    assert zoo.get("gmm").init_batch == 0  # k-means++ sees a whole training batch


@pytest.mark.parametrize("settings, fragments", [
    (["model.num_components=1500"], ("model.num_components=1500", "1437 examples", "at most 1437")),
    (["model.num_components=20", "train.batch_size=16"], ("larger than the 16 examples",)),
    (["data.dequantize=false"], ("density of continuous data", "data.dequantize=true")),
    (["data.binarize=fixed", "data.dequantize=false"], ("data.binarize=none",)),
    (["train.compute_dtype=bfloat16"], ("train.compute_dtype=bfloat16", "float32")),
    (["model.whiten=true", "train.batch_size=64"], ("model.whiten=true", "larger than 64")),
    (["model.covariance_type=block"], ("model.covariance_type='block'", "full, tied, diag, spherical")),
    (["model.reg_covar=-1"], ("model.reg_covar=-1.0", ">= 0")),
    (["model.noise_draws=0"], ("model.noise_draws=0", "> 0")),
])
def test_bad_input_is_refused_in_one_line_before_compute(settings, fragments, refused, no_compute,
                                                         tmp_path):
    argv = ["train", "gmm", "--workdir", str(tmp_path / "run")]
    for s in settings:
        argv += ["--set", s]
    refused(argv, *fragments)


def test_a_step_is_one_em_iteration_over_the_noise_draws():
    """The step sums the statistics of M = 3 dequantization draws (keys fold_in(key, j)): the
    same as one EM iteration on the M prepared copies of the batch side by side."""
    cfg = tiny("gmm", ["model.noise_draws=3", "train.batch_size=200", "model.covariance_type=diag"])
    run = zoo.setup(cfg)
    state = init_state(run)
    tx, step_fn = optimizer_and_step(run, with_model_state=False)
    raw = next(ordered_batches(run.train_source, 200))
    batch = jax.tree.map(jnp.asarray, raw)
    key = jax.random.key(7)
    new, metrics = jax.jit(step_fn)(state, batch, key)
    x = jnp.concatenate([run.space.prepare(batch, jax.random.fold_in(key, j))["image"].reshape(200, -1)
                         for j in range(3)])
    want, ll = jax.jit(em.em_step, static_argnums=2)(state.params["mixture"], x, "diag", 1e-6)
    for a, b in zip(jax.tree.leaves(new.params["mixture"]), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    assert float(metrics["loss"]) == pytest.approx(-float(ll), rel=1e-5)
    assert bool(metrics["finite"]) and int(new.step) == 1
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(new.ema_params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("gmm") / "run")
    cfg = tiny("gmm", ["model.covariance_type=diag"])
    state = zoo.train(cfg, workdir, verbose=False)
    return workdir, cfg, state


def test_trains_and_reports_beside_the_baselines(trained, tmp_path):
    """The evaluator's likelihood section (exact likelihood of dequantized digits beside the
    per-pixel baseline) and the family's report: BIC / AIC equal scikit-learn's
    GaussianMixture.bic / aic with the same parameters on the same prepared training split.
    (`gmzoo evaluate` end to end, with its sample metrics: the points test below.)"""
    workdir, cfg, state = trained
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(state.ema_params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    run, loaded = zoo.load(workdir)
    params = loaded.ema_params
    key = jax.random.key(cfg.eval.seed)
    prepare = jax.jit(run.space.prepare)
    raw = list(ordered_batches(run.train_source, cfg.eval.batch_size))
    x = np.concatenate([np.asarray(prepare(b, jax.random.fold_in(key, i))["image"])
                        for i, b in enumerate(raw)])
    levels = np.concatenate([b["image"] for b in raw]).astype(np.int64)
    lk = likelihood_report(run, params, x[:64], x, levels[:64], levels)
    assert lk["model"]["bound"] == "exact, dequantized"
    assert 2.0 < lk["model"]["bits_per_dim"] < 4.0
    assert "independent per-pixel categorical" in lk["baselines"]
    fam = family._report(run, params, str(tmp_path))
    x = x.reshape(len(x), -1).astype(np.float64)
    mix = jax.device_get(state.params["mixture"])
    ref = GaussianMixture(3, covariance_type="diag")
    ref.weights_, ref.means_ = np.asarray(mix["weights"], np.float64), np.asarray(mix["means"], np.float64)
    ref.precisions_cholesky_ = np.asarray(mix["precisions_cholesky"], np.float64)
    ref.covariances_ = 1.0 / ref.precisions_cholesky_ ** 2
    ref.n_features_in_ = 64
    bic = next(v for k, v in fam.items() if k.startswith("BIC"))
    aic = next(v for k, v in fam.items() if k.startswith("AIC"))
    assert bic == pytest.approx(ref.bic(x), rel=1e-5)
    assert aic == pytest.approx(ref.aic(x), rel=1e-5)
    assert fam["free parameters p"] == 3 * 64 * 2 + 2 and fam["training examples N"] == 1437
    for k, v in fam.items():
        if k.startswith("figure"):
            assert os.path.exists(v), k


def test_whitened_density_is_a_density_of_the_raw_data(tmp_path):
    """With model.whiten=true the mixture lives on z = (x - m) W; its log-likelihood of x
    equals that of the same full-covariance mixture mapped back to x-space (means mu W^-1 + m,
    covariances W^-T Sigma W^-1), i.e. log |det W| is counted. The whitening is fitted on the
    first batch (identity covariance there) and stays fixed in training."""
    cfg = tiny("gmm", ["model.whiten=true", "train.steps=2", "train.checkpoint_every=2"])
    run = zoo.setup(cfg)
    state0 = init_state(run)
    state = zoo.train(cfg, str(tmp_path / "w"), verbose=False)
    f0, f = jax.device_get(state0.params[FROZEN]), jax.device_get(state.params[FROZEN])
    for k in f:
        np.testing.assert_array_equal(f0[k], f[k])
    batch = jax.tree.map(jnp.asarray, next(ordered_batches(run.train_source, 1437)))
    data_key = jax.random.split(jax.random.key(cfg.train.seed), 3)[1]  # init_state's draw
    x = run.space.prepare(batch, data_key)["image"].reshape(1437, -1)
    z = np.asarray((x - f["shift"]) @ f["whiten"], np.float64)
    np.testing.assert_allclose(np.cov(z.T, bias=True), np.eye(64), atol=2e-3)
    mix = state.params["mixture"]
    winv = f["unwhiten"]
    cov_z = em.covariances_from_precisions_cholesky(mix["precisions_cholesky"], "full")
    raw = em.params_from_moments(mix["weights"], mix["means"] @ winv + f["shift"],
                                 winv.T @ cov_z @ winv, "full")
    with jax.enable_x64(True):
        raw64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), raw)
        want = np.asarray(em.log_prob(raw64, jnp.asarray(x[:50], jnp.float64), "full"))
    got = np.asarray(family.log_likelihood(run.module, state.params, x[:50]))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=0.05)
    samples = zoo.sample(str(tmp_path / "w"), n=8, mean=False)
    assert samples.shape == (8, 8, 8, 1) and np.all(np.isfinite(samples))


def test_points_em_is_monotone_through_the_spine(tmp_path):
    """On a fixed point set (no noise; noise_draws does not apply) the logged loss never rises;
    the report adds the train and test log-likelihoods and scatter plots."""
    workdir = str(tmp_path / "toy")
    cfg = cfglib.override(zoo.get("gmm_toy").default(),  # 5 components for 8 modes: EM moves
                          QUIET + ["train.steps=8", "train.log_every=1", "train.checkpoint_every=8",
                                   "model.num_components=5", "model.kmeans_steps=0",
                                   "eval.num_samples=200"])
    assert zoo.setup(cfg).module.noise_draws == 1
    zoo.train(cfg, workdir, verbose=False)
    losses = [r["loss"] for r in artifacts.read_metrics(os.path.join(workdir, "metrics.jsonl"))
              if r["split"] == "train"]
    assert len(losses) == 8 and np.all(np.diff(losses) <= 1e-4 * np.abs(losses[1:])), losses
    assert losses[-1] < losses[0]
    run, state = zoo.load(workdir)
    # (the report hook alone: `gmzoo evaluate`'s energy distance to the 10,000 training points
    # takes 7 s of this CPU)
    fam = family._report(run, state.ema_params, str(tmp_path))
    test_ll = float(np.mean(np.asarray(family.log_likelihood(
        run.module, state.ema_params, jnp.asarray(run.test_source.points)))))
    assert fam["test log-likelihood (nats per point)"] == pytest.approx(test_ll, rel=1e-5)
    assert fam["train log-likelihood (points per example)"] == pytest.approx(-losses[-1], abs=0.1)
    assert os.path.exists(fam["figure: draws (black) over the training set"])


def test_a_failed_cholesky_step_is_dropped_by_the_guard():
    """reg_covar = 0 on a batch of one repeated point: the covariances are singular, the step
    reports finite = False and leaves the parameters as they were (the loop then stops)."""
    cfg = cfglib.override(zoo.get("gmm_toy").default(),
                          QUIET + ["model.reg_covar=0", "train.batch_size=64", "model.num_components=2"])
    run = zoo.setup(cfg)
    state = init_state(run)
    _, step_fn = optimizer_and_step(run, with_model_state=False)
    batch = {"image": jnp.ones((64, 2)), "label": jnp.zeros((64,), jnp.int32)}
    new, metrics = jax.jit(step_fn)(state, batch, jax.random.key(0))
    assert not bool(metrics["finite"]) and int(new.step) == 1
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(new.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
