"""The contract every row of the model table keeps, at its tiny size (``Recipe.tiny``): it builds
and initialises, trains two steps through the spine's loop, samples arrays of the right shape,
range and finiteness, reports a finite held-out loss, and resumes from a checkpoint to the bit.
A new row is tested here the moment it is added to ``gmzoo.zoo.MODELS``."""

import os
import shutil

import jax
import numpy as np
import pytest

from gmzoo import zoo
from gmzoo.train.loop import heldout_metrics, inference_params, sample_images

RUN = ["train.batch_size=16", "train.steps=2", "train.log_every=1", "train.checkpoint_every=1",
       "train.eval_every=0", "train.sample_every=0", "train.progress_bar=false",
       "eval.batch_size=16", "eval.max_examples=16", "eval.num_samples=16"]
# A two-stage row is trained on the tiny run of this first-stage model.
FIRST_STAGE_MODEL = {"latent_ddpm": "ae", "vqvae_prior": "vqvae"}
NAMES = sorted(zoo.models())


def tiny(name: str, extra=()) -> list[str]:
    recipe = zoo.get(name)
    assert recipe.tiny, f"model table row {name!r} has no tiny variant (Recipe.tiny)"
    # mnist5k rows train on the 8x8 digits at their tiny size; other data sets stay.
    data = ["data.name=digits"] if recipe.default().data.name == "mnist5k" else []
    return data + list(recipe.tiny) + RUN + list(extra)


@pytest.fixture(scope="module")
def first_stages(tmp_path_factory):
    """Workdirs of trained tiny first stages, by model and data settings (built on demand)."""
    made = {}

    def get(model: str, data_overrides: list[str]) -> str:
        key = (model, tuple(data_overrides))
        if key not in made:
            wd = str(tmp_path_factory.mktemp(f"stage_{model}"))
            zoo.train(zoo.config(model, tiny(model) + data_overrides), wd, verbose=False,
                      overwrite=True)
            made[key] = wd
        return made[key]

    return get


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


@pytest.mark.parametrize("name", NAMES)
def test_row_contract(name, tmp_path, first_stages):
    recipe = zoo.get(name)
    extra = []
    if recipe.first_stage:
        default = zoo.get(name).default()
        data = [f"data.binarize={default.data.binarize}", f"data.scale={default.data.scale}",
                f"data.dequantize={str(default.data.dequantize).lower()}"]
        extra = [f"model.{recipe.first_stage}={first_stages(FIRST_STAGE_MODEL[name], data)}"]
    cfg = zoo.config(name, tiny(name, extra))
    assert type(cfg.sample) is recipe.sample_cls and type(cfg.eval) is recipe.eval_cls

    full = str(tmp_path / "full")
    state = zoo.train(cfg, full, verbose=False)
    assert int(jax.device_get(state.step)) == 2
    assert all(np.all(np.isfinite(x)) for x in leaves(state.params) if x.dtype.kind == "f")

    run = zoo.setup(cfg)
    params = inference_params(run, state)
    x = sample_images(run, params, 4, seed=0)
    assert x.shape == (4, *run.image_shape) and np.all(np.isfinite(x))
    if not run.points:
        assert np.all((x >= 0) & (x <= 1)), (x.min(), x.max())
    metrics = heldout_metrics(run, params, limit=16)
    assert "loss" in metrics and all(np.isfinite(v) for v in metrics.values()), metrics

    # Resume from step 1 (a copy of the run without its step-2 checkpoint) to the bit.
    part = str(tmp_path / "part")
    shutil.copytree(full, part)
    shutil.rmtree(os.path.join(part, "checkpoints", "2"))
    resumed = zoo.train(cfg, part, resume=True, verbose=False)
    for field in ("params", "ema_params", "opt_state", "model_state"):
        for a, b in zip(leaves(getattr(state, field)), leaves(getattr(resumed, field))):
            np.testing.assert_array_equal(a, b, err_msg=f"{name}: {field} after resume")
