"""Every model in the table trains a few steps on embedded data and samples, through the spine."""

import jax
import numpy as np
import pytest

from gmzoo import zoo
from gmzoo.recipes import vae
from gmzoo.train.loop import heldout_metrics, sample_images, setup, train

EXTRA = {
    "conv_vae": ["model.hidden=(4,8)"],
    "hvae": ["model.latent_hidden=(8,)"],
}


@pytest.mark.parametrize("name", sorted(r.name for r in vae.RECIPES))
def test_train_and_sample_every_model(name, tiny, tmp_path):
    """The AE / VAE family (the diffusion family: tests/recipes/test_diffusion_recipes.py)."""
    assert name in zoo.models()
    cfg = tiny(name, ["train.steps=3", "train.log_every=3", "train.checkpoint_every=3"]
               + EXTRA.get(name, []))
    state = train(cfg, str(tmp_path / name), verbose=False)
    run = setup(cfg)
    assert int(jax.device_get(state.step)) == 3
    images = sample_images(run, state.ema_params, 4, seed=0)
    assert images.shape == (4, 8, 8, 1)
    assert np.all((images >= 0) & (images <= 1))
    metrics = heldout_metrics(run, state.ema_params, limit=32)
    assert metrics and all(np.isfinite(v) for v in metrics.values())


def test_bfloat16_compute_trains(tiny, tmp_path):
    cfg = tiny("vae", ["train.compute_dtype=bfloat16", "train.steps=4", "train.log_every=2",
                       "train.checkpoint_every=4"])
    state = train(cfg, str(tmp_path / "bf16"), verbose=False)
    leaves = jax.tree.leaves(jax.device_get(state.params))
    assert all(x.dtype == np.float32 and np.all(np.isfinite(x)) for x in leaves)


def test_steps_per_call_matches_one_step_per_call(tiny, tmp_path):
    one = train(tiny("vae", ["train.steps=4", "train.checkpoint_every=4"]),
                str(tmp_path / "one"), verbose=False)
    four = train(tiny("vae", ["train.steps=4", "train.steps_per_call=4",
                              "train.checkpoint_every=4"]), str(tmp_path / "four"), verbose=False)
    for a, b in zip(jax.tree.leaves(jax.device_get(one.params)),
                    jax.tree.leaves(jax.device_get(four.params))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
