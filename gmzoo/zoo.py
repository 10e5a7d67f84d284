"""The one explicit table that names models.

A :class:`Recipe` tells the spine how to build, train, sample and evaluate one model: it turns a
model config (a frozen dataclass) into a Flax module and pure functions. Families add rows to
``MODELS``; there is no decorator registry filled by import side effects.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable

import flax.linen as nn
import jax

from gmzoo.config import ConfigError, ExperimentConfig


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How the spine drives one model.

    Attributes:
      name: the name used on the command line (``gmzoo train NAME``).
      description: one line for ``gmzoo list``.
      config_cls: the model config dataclass (its ``name`` field equals ``name``).
      default: the default :class:`ExperimentConfig` of ``gmzoo train NAME``.
      build: ``build(model_cfg, image_shape, num_levels) -> nn.Module``.
      check: ``check(experiment_cfg, image_shape)``: raise ConfigError for configs the model
        cannot take (wrong data space for its likelihood, image shape), before any compute.
      init: ``init(module, key, batch) -> variables`` (a prepared example batch).
      loss: ``loss(model_cfg, module) -> loss_fn(params, batch, key) -> (loss, metrics)``.
      sampler: ``sampler(model_cfg, module, *, mean) -> sample(params, key, n) -> [n, H, W, C]``
        in the data space: the likelihood's mean (``mean=True``) or a draw from it.
      log_likelihood: for likelihood models, ``log_likelihood(model_cfg, module, k) ->
        fn(params, x, key) -> [B]`` log p(x) in nats (an estimate or bound; see ``bound``).
      bound: what ``log_likelihood`` computes, e.g. ``"IWAE"`` or ``"exact"``.
    """

    name: str
    description: str
    config_cls: type
    default: Callable[[], ExperimentConfig]
    build: Callable[[Any, tuple[int, int, int], int], nn.Module]
    check: Callable[[ExperimentConfig, tuple[int, int, int]], None]
    init: Callable[[nn.Module, jax.Array, dict], Any]
    loss: Callable[[Any, nn.Module], Callable]
    sampler: Callable[[Any, nn.Module], Callable]
    log_likelihood: Callable[[Any, nn.Module, int], Callable] | None = None
    bound: str = ""


def _models() -> dict[str, Recipe]:
    from gmzoo.recipes import vae

    return {r.name: r for r in vae.RECIPES}


MODELS: dict[str, Recipe] | None = None


def models() -> dict[str, Recipe]:
    """The table ``{name: Recipe}`` of every model gmzoo can train by name."""
    global MODELS
    if MODELS is None:
        MODELS = _models()
    return MODELS


def get(name: str) -> Recipe:
    table = models()
    if name not in table:
        close = difflib.get_close_matches(name, list(table), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown model {name!r}.{hint} Models: {', '.join(sorted(table))}")
    return table[name]


def model_config_from_dict(d: dict) -> Any:
    """Rebuilds a model config saved as JSON (its ``name`` picks the dataclass)."""
    from gmzoo.config import from_dict

    recipe = get(d["name"])
    return from_dict(recipe.config_cls, d, prefix="model.")


def experiment_from_dict(d: dict) -> ExperimentConfig:
    from gmzoo.config import DataConfig, EvalConfig, OptimConfig, TrainConfig, from_dict

    return ExperimentConfig(
        model=model_config_from_dict(d["model"]),
        data=from_dict(DataConfig, d.get("data", {}), prefix="data."),
        optim=from_dict(OptimConfig, d.get("optim", {}), prefix="optim."),
        train=from_dict(TrainConfig, d.get("train", {}), prefix="train."),
        eval=from_dict(EvalConfig, d.get("eval", {}), prefix="eval."))
