"""Recipes of score-based SDE models (Song et al. 2021): ``score_vp``, ``score_subvp``,
``score_ve``, trained by denoising score matching in continuous time.

The network predicts eps (score = -eps / sigma_t) from the input scaled to unit variance,
x_t / sqrt(alpha_t^2 + sigma_t^2) (a VE SDE's x_t has std up to sigma_max), with noise
conditioning c = 999 t. Samplers: ``pc`` (reverse diffusion + Langevin, the paper's default),
``em``, ``rd``, ``ode``; ``gmzoo evaluate`` reports the probability-flow ODE likelihood.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp

from gmzoo.config import ConfigError, ExperimentConfig
from gmzoo.diffusion import parameterization
from gmzoo.diffusion.likelihood import ode_log_likelihood
from gmzoo.diffusion.sde import SDES
from gmzoo.losses.score import TIME_SCALE, dsm_loss
from gmzoo.recipes.base import Recipe
from gmzoo.recipes.diffusion import (TINY_UNET, DiffusionNets, DiffusionSampleConfig, UNetFields, apply_of,
                                     check_data, check_unet, experiment, make_unet,
                                     run_sde_sampler)

SCORE_SAMPLERS = ("pc", "em", "rd", "ode")


@dataclasses.dataclass(frozen=True)
class ScoreConfig(UNetFields):
    """A score network on one SDE (``vp``, ``subvp`` or ``ve``)."""

    name: str = "score_vp"
    sde: str = "vp"
    beta_min: float = 0.1  # vp, subvp
    beta_max: float = 20.0
    sigma_min: float = 0.01  # ve
    sigma_max: float = 50.0
    likelihood_weighting: bool = False
    train_eps: float = 1e-5  # t ~ U(train_eps, 1) in the loss
    sample_eps: float = 1e-3  # samplers stop at t = sample_eps


def make_sde(m: ScoreConfig):
    if m.sde == "ve":
        return SDES["ve"](sigma_min=m.sigma_min, sigma_max=m.sigma_max)
    return SDES[m.sde](beta_min=m.beta_min, beta_max=m.beta_max)


def _check(config: ExperimentConfig, image_shape) -> None:
    m = config.model
    check_data(config, m.name)
    if m.sde not in SDES:
        raise ConfigError(f"model.sde={m.sde!r}; choose one of {', '.join(SDES)}")
    try:
        make_sde(m)
    except ValueError as e:
        raise ConfigError(f"model {m.name}: {e}") from None
    if not 0 < m.train_eps < 1 or not 0 < m.sample_eps < 1:
        raise ConfigError("model.train_eps and model.sample_eps must be in (0, 1)")
    check_unet(m, image_shape)


def _check_sampling(m: ScoreConfig, s: DiffusionSampleConfig) -> None:
    if s.guidance > 0 or s.class_label >= 0:
        raise ConfigError(f"model {m.name} is unconditional: sample.guidance and "
                          "sample.class_label apply to ddpm / ddpm_cond")
    if s.eta:
        raise ConfigError("sample.eta is the DDIM noise; score models sample with pc, em, rd, ode")


def score_network(m: ScoreConfig, nets: DiffusionNets) -> Callable:
    """``apply(params, x_t, c, y=None, cond=None) -> eps`` with the input scaled to unit variance."""
    sde, net = make_sde(m), apply_of(nets.denoiser)

    def apply(params, x, c, y=None, cond=None):
        alpha, sigma = sde.marginal_coeffs(c / TIME_SCALE)
        scale = jax.lax.rsqrt(alpha ** 2 + sigma ** 2).reshape((-1,) + (1,) * (x.ndim - 1))
        return net(params, x * scale, c, y, cond)

    return apply


def _build(m: ScoreConfig, image_shape, num_levels) -> DiffusionNets:
    return DiffusionNets(make_unet(m), None, num_levels, tuple(image_shape))


def _init(nets: DiffusionNets, key, batch):
    x = batch["image"]
    return {"params": nets.denoiser.init(key, x, jnp.zeros((x.shape[0],)))["params"]}


def _loss(m: ScoreConfig, nets: DiffusionNets):
    apply = score_network(m, nets)
    return functools.partial(dsm_loss, apply_fn=lambda p, x, c, y: apply(p, x, c),
                             sde=make_sde(m), likelihood_weighting=m.likelihood_weighting,
                             eps=m.train_eps)


def _score_fn(m: ScoreConfig, nets: DiffusionNets) -> Callable:
    """``score(params, x, t)`` of the network at SDE time t."""
    sde, apply = make_sde(m), score_network(m, nets)

    def score(params, x, t):
        out = apply(params, x, TIME_SCALE * t)
        return parameterization.score("eps", out, x, *sde.marginal_coeffs(t))

    return score


def _sampler(m: ScoreConfig, nets: DiffusionNets, *, mean: bool = True,
             sampling: DiffusionSampleConfig = DiffusionSampleConfig()):
    sde, score = make_sde(m), _score_fn(m, nets)
    s = dataclasses.replace(sampling, sampler=sampling.sampler or SCORE_SAMPLERS[0])

    def sample(params, key, n):
        k_T, k_s = jax.random.split(key)
        x_T = sde.prior_sample(k_T, (n, *nets.image_shape))
        return run_sde_sampler(sde, lambda x, t: score(params, x, t), s, k_s, x_T,
                               eps=m.sample_eps)

    return sample


def ode_likelihood_fn(sde, score_fn: Callable, num_levels: int, eval_cfg,
                      *, eps: float) -> dict[str, Callable]:
    """``{label: fn(params, x, key) -> [B]}``: a lower bound on log P(x) of discrete images.

    x on the grid of ``num_levels`` levels in [-1, 1] is dequantized, y = x + u with u uniform
    over its bin (width 2 / (L - 1)); then log P(x) >= E_u log p(y) + D log(bin width), and
    log p(y) comes from the probability-flow ODE (Song et al. 2021, Appendix D.2).
    """
    half = 1.0 / (num_levels - 1)

    def log_likelihood(params, x, key):
        k_u, k_probe = jax.random.split(key)
        y = x + jax.random.uniform(k_u, x.shape, x.dtype, -half, half)
        logp, _ = ode_log_likelihood(sde, lambda z, t: score_fn(params, z, t), y, k_probe,
                                     num_steps=eval_cfg.ode_steps, method=eval_cfg.ode_method,
                                     trace=eval_cfg.trace, eps=eps, grid=eval_cfg.ode_grid)
        dims = math.prod(x.shape[1:])
        return logp + dims * math.log(2.0 * half)

    label = (f"PF-ODE ({eval_cfg.ode_method}, {eval_cfg.ode_steps} steps on a {eval_cfg.ode_grid} "
             f"grid, {eval_cfg.trace} trace), uniform dequantization")
    return {label: log_likelihood}


def _likelihoods(m: ScoreConfig, nets: DiffusionNets, eval_cfg) -> dict[str, Callable]:
    return ode_likelihood_fn(make_sde(m), _score_fn(m, nets), nets.num_levels, eval_cfg,
                             eps=m.train_eps)


def _recipe(name: str, description: str, model: ScoreConfig) -> Recipe:
    return Recipe(name=name, description=description, config_cls=ScoreConfig,
                  default=experiment(model, sample=DiffusionSampleConfig(sampler="pc", steps=500)),
                  build=_build, check=_check, init=_init, loss=_loss, sampler=_sampler,
                  samplers=SCORE_SAMPLERS, check_sampling=_check_sampling,
                  likelihoods=_likelihoods, sample_batch=500)


RECIPES: tuple[Recipe, ...] = (
    _recipe("score_vp", "score model on the VP SDE (DSM, PC sampler, PF-ODE likelihood)",
            ScoreConfig(name="score_vp", sde="vp")),
    _recipe("score_subvp", "score model on the sub-VP SDE", ScoreConfig(name="score_subvp", sde="subvp")),
    _recipe("score_ve", "score model on the VE SDE (sigma 0.01 .. 50)",
            ScoreConfig(name="score_ve", sde="ve")),
)

# Tiny variants (tests, smoke runs): the contract test over the model table trains each row so.
RECIPES = tuple(dataclasses.replace(r, tiny=TINY_UNET) for r in RECIPES)
