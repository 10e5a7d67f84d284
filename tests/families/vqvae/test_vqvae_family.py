"""The VQ-VAE rows on the spine: refusals before any compute, the EMA codebook read at
inference through ``Recipe.inference_state``, the stage-1 ELBO with the uniform prior."""

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo import zoo
from gmzoo.config import ConfigError
from gmzoo.families.vqvae import family
from gmzoo.train import loop

TINY = ["data.name=digits", "model.num_codes=16", "model.code_dim=4", "model.hidden=8"]


@pytest.mark.parametrize("overrides, message", [
    (["data.binarize=none"], "model.likelihood=bernoulli models data with data.binarize"),
    (["model.likelihood=gaussian"], "model.likelihood=gaussian models data with"),
    (["model.update=loss", "model.restart_threshold=0.5"], "restarts codes of the EMA codebook"),
    (["model.downsample=16"], "do not fit model vqvae"),
    (["model.num_codes=6000"], "model.num_codes=6000 is larger than the data"),
])
def test_refusals_name_the_setting(overrides, message):
    with pytest.raises(ConfigError, match=message):
        zoo.setup(zoo.config("vqvae", TINY + overrides))


def test_inference_params_carry_the_named_model_state_only():
    state = types.SimpleNamespace(ema_params={"enc": 1}, model_state={"vq_state": 2, "other": 3})
    with_state = types.SimpleNamespace(recipe=types.SimpleNamespace(inference_state=("vq_state",)))
    without = types.SimpleNamespace(recipe=types.SimpleNamespace(inference_state=()))
    assert loop.inference_params(with_state, state) == {"enc": 1, "vq_state": 2}
    assert loop.inference_params(without, state) is state.ema_params


@pytest.fixture(scope="module")
def tiny_run():
    """A tiny EMA-codebook VQ-VAE on digits, initialised (no training needed here)."""
    run = zoo.setup(zoo.config("vqvae", TINY))
    batch = {"image": jnp.asarray(np.random.default_rng(0).integers(0, 2, (8, 8, 8, 1)),
                                  jnp.float32)}
    variables = family._init(run.module, jax.random.key(0), batch)
    return run, variables, batch


def test_held_out_loss_and_likelihood_read_the_ema_codebook(tiny_run):
    run, variables, batch = tiny_run
    params = {**variables["params"], "vq_state": variables["vq_state"]}
    loss_fn = run.recipe.loss(run.config.model, run.module)
    loss, _ = loss_fn(params, batch, jax.random.key(1))
    # Another codebook in the state changes the held-out loss: the state is read, not ignored.
    moved = jax.tree.map(lambda v: v + 0.5, variables["vq_state"])
    loss_moved, _ = loss_fn({**variables["params"], "vq_state": moved}, batch, jax.random.key(1))
    assert np.isfinite(loss) and abs(float(loss) - float(loss_moved)) > 1e-3
    # In training (model_state given) the EMA codebook moves and the new state is returned.
    _, (_, new_state) = loss_fn(variables["params"], batch, jax.random.key(1),
                                model_state={"vq_state": variables["vq_state"]})
    assert not np.allclose(new_state["vq_state"]["quantizer"]["embed_sum"],
                           variables["vq_state"]["quantizer"]["embed_sum"])


def test_stage1_elbo_is_the_reconstruction_minus_l_log_k(tiny_run):
    run, variables, batch = tiny_run
    params = {**variables["params"], "vq_state": variables["vq_state"]}
    (label, elbo), = run.recipe.likelihoods(run.config.model, run.module, run.config.eval).items()
    recon = family._recon_log_prob(run.config.model, run.module, params, batch["image"])
    codes = 2 * 2  # 8x8 digits, downsample 4
    np.testing.assert_allclose(elbo(params, batch["image"], None),
                               recon - codes * math.log(16), rtol=1e-6)
    assert "uniform prior over the 4 codes" in label


def test_report_counts_codebook_usage_over_an_epoch_and_the_test_split(tiny_run, tmp_path):
    run, variables, _ = tiny_run
    params = {**variables["params"], "vq_state": variables["vq_state"]}
    lines = run.recipe.report(run, params, str(tmp_path))
    for split in ("an epoch of the training split", "the test split"):
        used = int(lines[f"codes used over {split}"].split(" of ")[0])
        assert lines[f"codes used over {split}"].endswith(" of 16") and 1 <= used <= 16
        assert 1.0 <= lines[f"code perplexity over {split}"] <= used + 1e-6
