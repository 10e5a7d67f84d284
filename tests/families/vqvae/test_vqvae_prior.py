"""The prior over VQ-VAE codes (``vqvae_prior``): the bound it reports is the prior's NLL over
codes plus the decoder's term, a uniform prior costs exactly L log K, VQ-VAE-2's bottom prior
reads the top codes, both samplers agree, and a wrong first stage is refused."""

import functools
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo import zoo
from gmzoo.config import ConfigError
from gmzoo.data.pipeline import ordered_batches
from gmzoo.families.vqvae import family as stage1
from gmzoo.families.vqvae import prior
from gmzoo.train.loop import heldout_metrics, inference_params, sample_images

TINY_VQ = ["data.name=digits", "model.num_codes=16", "model.code_dim=4", "model.hidden=8"]
RUN = ["train.batch_size=16", "train.steps=2", "train.eval_every=0", "train.sample_every=0",
       "train.checkpoint_every=2", "train.progress_bar=false", "eval.batch_size=16"]
TINY_PRIOR = list(zoo.get("vqvae_prior").tiny)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny trained vqvae and a tiny prior trained on it (2 steps each)."""
    vq_dir = str(tmp_path_factory.mktemp("vqvae"))
    zoo.train(zoo.config("vqvae", TINY_VQ + RUN), vq_dir, verbose=False)
    prior_dir = str(tmp_path_factory.mktemp("prior"))
    cfg = zoo.config("vqvae_prior", ["data.name=digits", f"model.autoencoder={vq_dir}"]
                     + TINY_PRIOR + RUN)
    state = zoo.train(cfg, prior_dir, verbose=False)
    return vq_dir, prior_dir, zoo.setup(cfg), state


def test_two_stage_bound_is_the_prior_nll_plus_the_decoder_term(runs):
    vq_dir, _, run, state = runs
    params = inference_params(run, state)
    prior_nll = heldout_metrics(run, params, limit=16)["nll_codes"]
    vq_run, vq_state = zoo.load(vq_dir)
    recon_nll = heldout_metrics(vq_run, inference_params(vq_run, vq_state), limit=16)["recon_nll"]
    # The same 16 test digits, binarized with the same evaluation key by both runs.
    batch = next(iter(ordered_batches(run.test_source, 16, 16)))
    x = run.space.prepare(batch, jax.random.fold_in(jax.random.key(run.config.eval.seed), 0))
    fns = run.recipe.likelihoods(run.config.model, run.module, run.config.eval)
    (_, uniform), = [(k, f) for k, f in fns.items() if k.startswith("stage 1")]
    both = jax.jit(lambda p, x: (fns["two-stage bound: log p(x|z_q) + log p_prior(codes)"](
        p, x, None), uniform(p, x, None)))
    two_stage, stage1_elbo = (-float(jnp.mean(v)) for v in both(params, x["image"]))
    np.testing.assert_allclose(two_stage, prior_nll + recon_nll, rtol=1e-5)
    # The stage-1 ELBO beside it swaps the learned prior for L log K.
    np.testing.assert_allclose(stage1_elbo, recon_nll + 4 * math.log(16), rtol=1e-5)


@functools.lru_cache(maxsize=4)  # built once per level count and network for the tests below
def _prior_nets(two_level: bool, net: str = "gated_pixelcnn"):
    m = prior.VQPriorConfig(prior=net, features=8, num_layers=1, first_kernel=3, embedding=4,
                            cond_channels=4, d_model=8, num_heads=2, mlp_ratio=2)
    cls = stage1.VQVAE2Config if two_level else stage1.VQVAEConfig
    vq = stage1._build(cls(num_codes=5, code_dim=4, hidden=8), (8, 8, 1), 2)
    vq_params = jax.jit(lambda k: stage1._init(vq, k, {"image": jnp.zeros((2, 8, 8, 1))}))(
        jax.random.key(0))
    frozen = {**vq_params["params"], "vq_state": vq_params["vq_state"]}  # inference_params
    stage = types.SimpleNamespace(run=types.SimpleNamespace(module=vq), params=frozen)
    nets = prior._build(m, (8, 8, 1), 2, stage=stage)
    init = jax.jit(lambda k: prior._init(nets, k, {"image": jnp.zeros((2, 8, 8, 1))}))
    return nets, init(jax.random.key(1))["params"]


NETS = ["gated_pixelcnn", "transformer"]


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("two_level", [False, True])
def test_a_uniform_prior_costs_exactly_l_log_k(two_level, net):
    nets, params = _prior_nets(two_level, net)
    zero = {k: (v if k == "frozen" else jax.tree.map(jnp.zeros_like, v)) for k, v in params.items()}
    codes = tuple(jax.random.randint(jax.random.key(i), (3, h, w), 0, 5)
                  for i, (h, w) in enumerate(nets.vq.code_shapes))
    num = sum(h * w for h, w in nets.vq.code_shapes)  # 2x2 (+ 4x4 for VQ-VAE-2)
    log_prob = jax.jit(lambda p, c: prior.codes_log_prob(nets, p, c))
    np.testing.assert_allclose(log_prob(zero, codes), -num * math.log(5), rtol=1e-6)


@pytest.mark.parametrize("net", NETS)
def test_vqvae2_bottom_prior_reads_the_top_codes_and_samplers_agree(net):
    nets, params = _prior_nets(True, net)
    params = jax.tree.map(lambda v: v + 0.3 * jax.random.normal(jax.random.key(2), v.shape)
                          if v.dtype == jnp.float32 else v, params)
    top = jnp.zeros((2, 2, 2), jnp.int32)
    bottom = jnp.ones((2, 4, 4), jnp.int32)
    both = jax.jit(lambda t: (prior.codes_log_prob(nets, params, (t, bottom)),
                              nets.levels[0].log_prob(params["top"],
                                                      t[..., None].astype(jnp.float32))))
    a, top_only = both(top)
    b, top_only_b = both(top.at[:, 0, 0].set(3))
    # The bottom term changes with the top codes (not only the top term).
    assert np.all(np.abs((a - top_only) - (b - top_only_b)) > 1e-4)
    draw = lambda sampler: jax.jit(prior._sampler(
        None, nets, mean=True, sampling=prior.ARSampleConfig(sampler=sampler)),
        static_argnums=2)(params, jax.random.key(3), 3)
    np.testing.assert_array_equal(draw("cached"), draw("naive"))


def test_a_transformer_prior_trains_samples_and_evaluates_through_the_spine(runs, tmp_path):
    vq_dir, _, _, _ = runs
    cfg = zoo.config("vqvae_prior", ["data.name=digits", f"model.autoencoder={vq_dir}",
                                     "model.prior=transformer", "model.d_model=8",
                                     "model.num_heads=2", "model.num_layers=1"] + RUN)
    state = zoo.train(cfg, str(tmp_path), verbose=False)
    run = zoo.setup(cfg)
    params = inference_params(run, state)
    assert type(run.module.levels[0].net).__name__ == "ARTransformer" and set(params) == {
        "frozen", "top"}
    metrics = heldout_metrics(run, params, limit=16)
    assert np.isfinite(metrics["nll_codes"]) and metrics["nll_codes"] > 0
    x = sample_images(run, params, 3, seed=0)
    assert x.shape == (3, 8, 8, 1) and np.all((x >= 0) & (x <= 1))


def test_refusals(runs):
    vq_dir, prior_dir, _, _ = runs
    base = ["data.name=digits"] + TINY_PRIOR
    with pytest.raises(ConfigError, match="holds a vqvae_prior run; vqvae_prior takes a vqvae "
                                          "or vqvae2 run"):
        zoo.setup(zoo.config("vqvae_prior", base + [f"model.autoencoder={prior_dir}"]))
    with pytest.raises(ConfigError, match="data must match the VQ-VAE's"):
        zoo.setup(zoo.config("vqvae_prior", base + [f"model.autoencoder={vq_dir}",
                                                    "data.binarize=fixed"]))
    with pytest.raises(ConfigError, match="is not a trained run"):
        zoo.setup(zoo.config("vqvae_prior", base + [f"model.autoencoder={vq_dir}/nothing"]))
    with pytest.raises(ConfigError, match="the prior over codes is unconditional"):
        zoo.setup(zoo.config("vqvae_prior", base + [f"model.autoencoder={vq_dir}",
                                                    "sample.class_label=1"]))
