"""The one explicit table that names models.

A :class:`~gmzoo.recipes.base.Recipe` tells the spine how to build, train, sample and evaluate one model: it turns a
model config (a frozen dataclass) into a Flax module and pure functions. Families add rows to
``MODELS``; there is no decorator registry filled by import side effects.
"""

from __future__ import annotations

import difflib
from typing import Any

from gmzoo.config import ConfigError, ExperimentConfig
from gmzoo.recipes import diffusion, gan, latent, score, vae
from gmzoo.recipes import cyclegan
from gmzoo.recipes import image2image
from gmzoo.recipes import vae_gan
from gmzoo.recipes.base import Recipe

__all__ = ["MODELS", "Recipe", "experiment_from_dict", "get", "model_config_from_dict", "models"]


MODELS: dict[str, Recipe] = {r.name: r for r in (*vae.RECIPES, *diffusion.RECIPES,
                                                 *score.RECIPES, *latent.RECIPES,
                                                 *gan.RECIPES, *cyclegan.RECIPES,
                                                 *image2image.RECIPES, *vae_gan.RECIPES)}


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


def model_config_from_dict(d: dict) -> Any:
    """Rebuilds a model config saved as JSON (its ``name`` picks the dataclass)."""
    from gmzoo.config import from_dict

    recipe = get(d["name"])
    return from_dict(recipe.config_cls, d, prefix="model.")


def experiment_from_dict(d: dict) -> ExperimentConfig:
    from gmzoo.config import (DataConfig, EvalConfig, OptimConfig, SampleConfig, TrainConfig,
                              from_dict)

    return ExperimentConfig(
        model=model_config_from_dict(d["model"]),
        data=from_dict(DataConfig, d.get("data", {}), prefix="data."),
        optim=from_dict(OptimConfig, d.get("optim", {}), prefix="optim."),
        train=from_dict(TrainConfig, d.get("train", {}), prefix="train."),
        eval=from_dict(EvalConfig, d.get("eval", {}), prefix="eval."),
        sample=from_dict(SampleConfig, d.get("sample", {}), prefix="sample."))
