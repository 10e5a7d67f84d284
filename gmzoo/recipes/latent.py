"""Latent diffusion (Rombach et al. 2022): a DDPM in the latent space of an autoencoder trained by
the spine (``gmzoo train ae|rae|dae|vae|beta_vae|iwae|conv_vae``), named by its workdir:

    gmzoo train ae --workdir runs/ae
    gmzoo train latent_ddpm --set model.autoencoder=runs/ae

The autoencoder's (EMA) weights are copied into this run's ``params["frozen"]`` (the optimizer
never changes them), so the checkpoint stands alone. Latents are the encoder's code (a VAE's
posterior mean), standardised per dimension with statistics of the autoencoder's training data;
the denoiser is a time-conditioned MLP; samples are decoded with the decoder's mean.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gmzoo.config import ConfigError, DataConfig, ExperimentConfig
from gmzoo.diffusion import schedules
from gmzoo.losses import diffusion as losses
from gmzoo.nn.time_mlp import TimeMLP
from gmzoo.recipes.base import Recipe, check_first_stage_data
from gmzoo.recipes.diffusion import (DISCRETE_SAMPLERS, SDE_SAMPLERS, DiffusionSampleConfig, check_discrete_sampling,
                                     check_schedule, eps_network, experiment, guided_eps,
                                     run_discrete_sampler)
from gmzoo.samplers.vae import sample_likelihood

AUTOENCODERS = ("ae", "rae", "dae", "vae", "beta_vae", "iwae", "conv_vae")


@dataclasses.dataclass(frozen=True)
class LatentConfig:
    name: str = "latent_ddpm"
    autoencoder: str = ""  # workdir of a trained autoencoder run
    hidden: tuple[int, ...] = (512, 512, 512)
    schedule: str = "linear"
    num_steps: int = 1000
    prediction: str = "eps"
    variance: str = "posterior"
    stats_examples: int = 2000  # training images for the latent mean / std


@dataclasses.dataclass(frozen=True)
class LatentNets:
    denoiser: TimeMLP
    autoencoder: object  # the autoencoder's Linen module
    autoencoder_config: object  # its ExperimentConfig
    image_shape: tuple[int, ...]
    stage: Any = None  # the autoencoder run (gmzoo.train.loop.Stage)
    stats_examples: int = 2000


def _check(config: ExperimentConfig, image_shape, *, stage) -> None:
    m = config.model
    ae = stage.config
    if ae.model.name not in AUTOENCODERS or getattr(ae.model, "num_layers", 1) != 1:
        raise ConfigError(f"model.autoencoder: {m.autoencoder} holds a {ae.model.name} run; latent "
                          f"diffusion takes one of {', '.join(AUTOENCODERS)} (one latent layer)")
    check_first_stage_data(config, ae, "the autoencoder's")
    check_schedule(m)
    if not m.hidden or min(m.hidden) < 1 or m.stats_examples < 2:
        raise ConfigError("model.hidden must be positive widths and model.stats_examples >= 2")


def _build(m: LatentConfig, image_shape, num_levels, *, stage) -> LatentNets:
    return LatentNets(TimeMLP(hidden=tuple(m.hidden)), stage.run.module, stage.config,
                      tuple(image_shape), stage, m.stats_examples)


def _encode(nets: LatentNets, ae_params, x):
    z = nets.autoencoder.apply({"params": ae_params}, x, method="encode")
    return z[0] if isinstance(z, tuple) else z  # a VAE's (mean, log_var): the posterior mean


def _decode(nets: LatentNets, ae_params, z):
    out = nets.autoencoder.apply({"params": ae_params}, z, method="decode")
    if nets.autoencoder_config.model.name in ("vae", "beta_vae", "iwae", "conv_vae"):
        m = nets.autoencoder_config.model
        return sample_likelihood(jax.random.key(0), out, likelihood=m.likelihood,
                                 num_levels=nets.autoencoder.num_levels, mean=True)
    return out


def _init(nets: LatentNets, key, batch):
    """Denoiser initialised; the autoencoder's EMA weights and latent statistics copied in (the
    statistics are read on the host: ``init_traced=False``, the denoiser's init compiled)."""
    from gmzoo.data.pipeline import ordered_batches

    ae_run = nets.stage.run
    ae_params = jax.device_get(nets.stage.params)
    encode = jax.jit(lambda x: _encode(nets, ae_params, x))
    prep_key = jax.random.key(ae_run.config.eval.seed)
    codes = np.concatenate([
        np.asarray(encode(ae_run.space.prepare(b, jax.random.fold_in(prep_key, i))["image"]))
        for i, b in enumerate(ordered_batches(ae_run.train_source, 500, nets.stats_examples))])
    z = jnp.zeros((batch["image"].shape[0], codes.shape[1]))
    denoiser = jax.jit(nets.denoiser.init)(key, z, jnp.zeros((z.shape[0],)))["params"]
    frozen = {"autoencoder": ae_params, "mean": jnp.asarray(codes.mean(0)),
              "std": jnp.asarray(codes.std(0) + 1e-6)}
    return {"params": {"denoiser": denoiser, "frozen": frozen}}


def _latents(nets: LatentNets, params, x):
    f = jax.lax.stop_gradient(params["frozen"])
    return (_encode(nets, f["autoencoder"], x) - f["mean"]) / f["std"]  # [B, Z]


def _loss(m: LatentConfig, nets: LatentNets):
    schedule = schedules.make(m.schedule, m.num_steps)
    apply_fn = lambda p, z, c, y, cond: nets.denoiser.apply({"params": p["denoiser"]}, z, c)
    simple = functools.partial(losses.simple_loss, apply_fn=apply_fn, schedule=schedule,
                               prediction=m.prediction)

    def loss_fn(params, batch, key):
        return simple(params, {"image": _latents(nets, params, batch["image"])}, key)

    return loss_fn


def _sampler(m: LatentConfig, nets: LatentNets, *, mean: bool = True,
             sampling: DiffusionSampleConfig = DiffusionSampleConfig()):
    schedule = schedules.make(m.schedule, m.num_steps)
    s = dataclasses.replace(sampling, clip=False)  # latents are not confined to [-1, 1]
    apply = lambda p, z, c, y, cond: nets.denoiser.apply({"params": p}, z, c)

    def sample(params, key, n):
        f = params["frozen"]
        make_eps = lambda co: guided_eps(eps_network(apply, params["denoiser"], m.prediction, co),
                                         s, None)
        k_T, k_s = jax.random.split(key)
        z_T = jax.random.normal(k_T, (n, f["mean"].shape[0]))
        z = run_discrete_sampler(make_eps, schedule, s, m.variance, k_s, z_T)
        return _decode(nets, f["autoencoder"], z * f["std"] + f["mean"])

    return sample


def _check_sampling(m: LatentConfig, s: DiffusionSampleConfig) -> None:
    check_discrete_sampling(m, s)


RECIPES: tuple[Recipe, ...] = (
    Recipe(name="latent_ddpm", description="DDPM in the latent space of a trained autoencoder "
           "run (--set model.autoencoder=WORKDIR)", config_cls=LatentConfig,
           default=experiment(LatentConfig(), data=DataConfig(name="mnist5k"), steps=6000),
           build=_build, check=_check, init=_init, init_traced=False, loss=_loss,
           sampler=_sampler,
           samplers=DISCRETE_SAMPLERS + SDE_SAMPLERS, check_sampling=_check_sampling,
           sample_batch=500, first_stage="autoencoder"),
)

# Tiny variant (tests, smoke runs); model.autoencoder must still name a trained run.
RECIPES = tuple(dataclasses.replace(r, tiny=("model.hidden=(16,)", "model.num_steps=20",
                                             "model.stats_examples=64", "sample.steps=3"))
                for r in RECIPES)
