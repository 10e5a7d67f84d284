"""The one explicit table that names models.

The edge of the package: the spine (:mod:`gmzoo.train`) never imports this table; the command
line and the functions below hand it in. A :class:`~gmzoo.recipes.base.Recipe` tells the spine how to build, train, sample and evaluate one model: it turns a
model config (a frozen dataclass) into a Flax module and pure functions. Families add rows to
``MODELS``; there is no decorator registry filled by import side effects.
"""

from __future__ import annotations

import difflib
from typing import Any

from gmzoo import config as cfglib
from gmzoo.config import ConfigError, ExperimentConfig
from gmzoo.recipes import diffusion, gan, latent, score, vae
from gmzoo.recipes import cyclegan
from gmzoo.recipes import image2image
from gmzoo.recipes import vae_gan
from gmzoo.families.rbm import family as rbm_family
from gmzoo.families.gmm import family as gmm_family
from gmzoo.families.ebm import family as ebm_family
from gmzoo.families.autoregressive import family as ar_family
from gmzoo.families.flows import family as flow_family
from gmzoo.families.vqvae import family as vq_family
from gmzoo.families.vqvae import prior as vq_prior
from gmzoo.families.flows import superres
from gmzoo.recipes.base import Recipe
from gmzoo.train import evaluate as evaluation
from gmzoo.train import loop

__all__ = ["MODELS", "Recipe", "config", "evaluate", "experiment_from_dict", "get", "load",
           "models", "sample", "sampler_sweep", "setup", "train"]


MODELS: dict[str, Recipe] = {r.name: r for r in (*vae.RECIPES, *diffusion.RECIPES,
                                                 *score.RECIPES, *latent.RECIPES,
                                                 *gan.RECIPES, *cyclegan.RECIPES,
                                                 *image2image.RECIPES, *vae_gan.RECIPES,
                                                 *rbm_family.RECIPES, *gmm_family.RECIPES,
                                                 *ebm_family.RECIPES, *ar_family.RECIPES,
                                                 *flow_family.RECIPES,
                                                 *superres.RECIPES, *vq_family.RECIPES,
                                                 *vq_prior.RECIPES)}


def models() -> dict[str, Recipe]:
    """The table ``{name: Recipe}`` of every model gmzoo can train by name."""
    return MODELS


def get(name: str) -> Recipe:
    """The recipe named ``name``; an unknown name lists the models that exist."""
    if name not in MODELS:
        close = difflib.get_close_matches(name, list(MODELS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown model {name!r}.{hint} Models: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def experiment_from_dict(d: dict) -> ExperimentConfig:
    """Rebuilds an experiment config saved as JSON (its ``model.name`` picks the family)."""
    return loop.experiment_from_dict(d, get)


# --- the Python path: the spine's entry points with this table ------------------------------

def config(name: str, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """The default experiment of model ``name`` with ``overrides`` (``"train.steps=200"``,
    ``"sample.temperature=0.8"``, ...) applied; bad keys and values are refused in one line."""
    return cfglib.override(get(name).default(), list(overrides))


def setup(config: ExperimentConfig, **kw) -> loop.Run:
    """:func:`gmzoo.train.loop.setup` with this table."""
    return loop.setup(config, get, **kw)


def train(config: ExperimentConfig, workdir: str, **kw):
    """:func:`gmzoo.train.loop.train` with this table: trains ``config`` in ``workdir`` and
    returns the final train state."""
    return loop.train(config, workdir, get, **kw)


def load(workdir: str, **kw) -> tuple[loop.Run, Any]:
    """:func:`gmzoo.train.loop.load_run` with this table: ``(run, state)`` of a trained run."""
    return loop.load_run(workdir, get, **kw)


load_run = load


def sample(workdir: str, n: int = 64, *, seed: int = 0, overrides: list[str] | tuple[str, ...] = (),
           mean: bool = False, **kw):
    """``n`` samples ``[n, H, W, C]`` in [0, 1] (points ``[n, 2]``) of the run in ``workdir``
    drawn with its EMA parameters and any of its samplers and settings (``overrides`` such as
    ``"sample.sampler=ddim"``, ``"sample.steps=50"``)."""
    run, state = loop.load_run(workdir, get, overrides=list(overrides), **kw)
    return loop.sample_images(run, loop.inference_params(run, state), n, seed, mean=mean)


def evaluate(workdir: str, **kw) -> dict:
    """:func:`gmzoo.train.evaluate.evaluate` with this table."""
    return evaluation.evaluate(workdir, get, **kw)


def sampler_sweep(workdir: str, specs: list[str], **kw) -> list[dict]:
    """:func:`gmzoo.train.evaluate.sampler_sweep` with this table."""
    return evaluation.sampler_sweep(workdir, specs, get, **kw)
