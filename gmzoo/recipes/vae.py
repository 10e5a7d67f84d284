"""Recipes of the autoencoder and VAE family: configs -> modules, losses, samplers, bounds.

Rows: ``ae`` (L2 autoencoder), ``rae`` (latent penalty), ``dae`` (denoising), ``vae`` (MLP),
``conv_vae``, ``beta_vae`` (beta = 4), ``hvae`` (Markovian hierarchical, two stochastic layers),
``iwae`` (trained on the importance-weighted bound, k = 5).
"""

from __future__ import annotations

import dataclasses
import functools

import jax

from gmzoo.config import (ConfigError, DataConfig, EvalConfig, ExperimentConfig, OptimConfig,
                          TrainConfig, positive)
from gmzoo.losses import autoencoder as ae_losses
from gmzoo.losses import vae as vae_losses
from gmzoo.models import vae as vae_models
from gmzoo.samplers import vae as vae_samplers
from gmzoo.nn.tree import cast_inputs
from gmzoo.recipes.base import Recipe


@dataclasses.dataclass(frozen=True)
class AEConfig:
    """Autoencoders: ``ae`` (L2), ``rae`` (+ ``penalty_weight`` * Omega(z)), ``dae``
    (reconstruct x from a corrupted x)."""

    name: str = "ae"
    architecture: str = "mlp"  # mlp | conv
    latent_dim: int = 32
    hidden: tuple[int, ...] = (512, 256)
    penalty: str = "l2"  # rae: l2 | l1
    penalty_weight: float = 0.01
    corruption: str = "gaussian"  # dae: gaussian | masking
    noise_level: float = 0.3


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """VAEs: one stochastic layer (``num_layers=1``) or a Markovian hierarchy (``>= 2``)."""

    name: str = "vae"
    architecture: str = "mlp"  # mlp | conv
    latent_dim: int = 32
    hidden: tuple[int, ...] = (512, 256)
    latent_hidden: tuple[int, ...] = (128, 128)  # hierarchical links z_t <-> z_{t+1}
    num_layers: int = 1
    likelihood: str = "bernoulli"  # bernoulli | gaussian | discretized_logistic | categorical
    beta: float = 1.0
    objective: str = "elbo"  # elbo | iwae
    train_k: int = 5  # importance samples of the iwae objective


@dataclasses.dataclass(frozen=True)
class VAEEvalConfig(EvalConfig):
    """``gmzoo evaluate`` options of the VAEs: ``iwae_k`` importance samples of the IWAE bound
    L_k on log p(x) (Burda et al. 2016), the reported likelihood."""

    iwae_k: int = positive(1000)


# Which data space each likelihood models (DataConfig fields), for the checks below.
_LIKELIHOOD_DATA = {
    "bernoulli": "data.binarize=fixed or dynamic",
    "categorical": "data.binarize=none, data.scale=levels, data.dequantize=false",
    "discretized_logistic": "data.binarize=none, data.scale=symmetric, data.dequantize=false",
    "gaussian": "data.binarize=none, data.scale=symmetric, data.dequantize=true (a density)",
}


def _likelihood_fits(likelihood: str, d: DataConfig) -> bool:
    if likelihood == "bernoulli":
        return d.binarize in ("fixed", "dynamic")
    if likelihood == "categorical":
        return d.binarize == "none" and d.scale == "levels" and not d.dequantize
    if likelihood == "discretized_logistic":
        return d.binarize == "none" and d.scale == "symmetric" and not d.dequantize
    return d.binarize == "none" and d.scale == "symmetric" and d.dequantize


def _check(config: ExperimentConfig, image_shape: tuple[int, int, int]) -> None:
    m = config.model
    if m.architecture not in vae_models.ARCHITECTURES:
        raise ConfigError(f"model.architecture={m.architecture!r}; choose one of "
                          f"{', '.join(vae_models.ARCHITECTURES)}")
    if m.latent_dim <= 0:
        raise ConfigError(f"model.latent_dim={m.latent_dim} must be > 0")
    error = vae_models.image_shape_error(image_shape, m.architecture, tuple(m.hidden))
    if error:
        raise ConfigError(f"{config.data.name} images {tuple(image_shape)} do not fit "
                          f"model {m.name}: {error}")
    if isinstance(m, VAEConfig):
        if m.likelihood not in _LIKELIHOOD_DATA:
            raise ConfigError(f"model.likelihood={m.likelihood!r}; choose one of "
                              f"{', '.join(_LIKELIHOOD_DATA)}")
        if not _likelihood_fits(m.likelihood, config.data):
            raise ConfigError(f"model.likelihood={m.likelihood} models data with "
                              f"{_LIKELIHOOD_DATA[m.likelihood]}")
        if m.num_layers < 1:
            raise ConfigError(f"model.num_layers={m.num_layers} must be >= 1")
        if m.objective not in ("elbo", "iwae"):
            raise ConfigError(f"model.objective={m.objective!r}; choose elbo or iwae")
        if m.beta < 0:
            raise ConfigError(f"model.beta={m.beta} must be >= 0")
        if m.train_k < 1:
            raise ConfigError(f"model.train_k={m.train_k} must be >= 1")
    else:
        if m.penalty not in ae_losses.LATENT_PENALTIES:
            raise ConfigError(f"model.penalty={m.penalty!r}; choose one of "
                              f"{', '.join(ae_losses.LATENT_PENALTIES)}")
        if m.corruption not in ae_losses.CORRUPTIONS:
            raise ConfigError(f"model.corruption={m.corruption!r}; choose one of "
                              f"{', '.join(ae_losses.CORRUPTIONS)}")


def _apply(module):
    """Linen ``apply`` taking the ``"params"`` collection alone (the train state's params).

    Floating inputs are cast to the parameters' dtype, so with ``train.compute_dtype=bfloat16``
    (the step casts the parameters) the network runs in bfloat16 while the loss still compares
    its outputs with the float32 data.
    """

    def apply(params, *args, **kwargs):
        return module.apply({"params": params}, *cast_inputs(params, *args), **kwargs)

    return apply


# --- autoencoders -------------------------------------------------------------------------

def _build_ae(m: AEConfig, image_shape, num_levels):
    return vae_models.Autoencoder(image_shape=tuple(image_shape), latent_dim=m.latent_dim,
                                  architecture=m.architecture, hidden=tuple(m.hidden))


def _init_ae(module, key, batch):
    return module.init(key, batch["image"])


def _ae_loss(m: AEConfig, module):
    apply_fn = _apply(module)
    if m.name == "rae":
        return functools.partial(ae_losses.regularized_ae_loss, apply_fn=apply_fn,
                                 weight=m.penalty_weight, penalty=m.penalty)
    if m.name == "dae":
        return functools.partial(ae_losses.denoising_ae_loss, apply_fn=apply_fn,
                                 corruption=m.corruption, noise_level=m.noise_level)
    return functools.partial(ae_losses.reconstruction_loss, apply_fn=apply_fn)


def _ae_sampler(m: AEConfig, module, *, mean: bool = True, sampling=None):
    """An autoencoder has no prior: it 'samples' by decoding z ~ N(0, I), which shows what its
    latent space holds there (a regularized AE keeps codes near 0, so this is not noise)."""
    apply_fn = _apply(module)

    def sample(params, key, n):
        z = jax.random.normal(key, (n, m.latent_dim))
        return apply_fn(params, z, method="decode")

    return sample


# --- VAEs ---------------------------------------------------------------------------------

def _build_vae(m: VAEConfig, image_shape, num_levels):
    common = dict(image_shape=tuple(image_shape), latent_dim=m.latent_dim,
                  likelihood=m.likelihood, architecture=m.architecture, hidden=tuple(m.hidden),
                  num_levels=num_levels)
    if m.num_layers >= 2:
        return vae_models.HierarchicalVAE(num_layers=m.num_layers,
                                          latent_hidden=tuple(m.latent_hidden), **common)
    return vae_models.VAE(**common)


def _init_vae(module, key, batch):
    init_key, sample_key = jax.random.split(key)
    return module.init(init_key, batch["image"], sample_key)


def _bound_fn(m: VAEConfig):
    return vae_losses.hierarchical_iwae_bound if m.num_layers >= 2 else vae_losses.iwae_bound


def _vae_loss(m: VAEConfig, module):
    apply_fn = _apply(module)
    kw = dict(apply_fn=apply_fn, likelihood=m.likelihood, num_levels=module.num_levels)
    if m.objective == "iwae":
        return functools.partial(vae_losses.iwae_loss, k=m.train_k, bound=_bound_fn(m), **kw)
    loss = vae_losses.hierarchical_elbo_loss if m.num_layers >= 2 else vae_losses.elbo_loss
    return functools.partial(loss, beta=m.beta, **kw)


def _vae_sampler(m: VAEConfig, module, *, mean: bool = True, sampling=None):
    kw = dict(apply_fn=_apply(module), latent_dim=m.latent_dim, likelihood=m.likelihood,
              num_levels=module.num_levels, mean=mean)
    if m.num_layers >= 2:
        fn = functools.partial(vae_samplers.sample_hierarchical_vae, num_layers=m.num_layers, **kw)
    else:
        fn = functools.partial(vae_samplers.sample_vae, **kw)
    return lambda params, key, n: fn(params, key, n)


def _vae_likelihoods(m: VAEConfig, module, eval_cfg: VAEEvalConfig):
    """``{"IWAE (k=K)": fn(params, x, key) -> [B]}``: the IWAE bound L_K, a lower bound on
    log p(x), with K = ``eval.iwae_k``."""
    bound, k = _bound_fn(m), eval_cfg.iwae_k
    outputs_per_value = module.num_levels if m.likelihood == "categorical" else 2

    def log_likelihood(params, x, key):
        # Importance samples per chunk: keep one chunk's decoder output near 2e7 floats.
        chunk = max(1, min(k, int(2e7 // (x.size * outputs_per_value))))
        return bound(params, x, key, apply_fn=_apply(module), likelihood=m.likelihood, k=k,
                     chunk=chunk, num_levels=module.num_levels)

    return {f"IWAE (k={k})": log_likelihood}


# --- defaults -----------------------------------------------------------------------------

_BINARY_MNIST = DataConfig(name="mnist5k", binarize="dynamic")
_UNIT_MNIST = DataConfig(name="mnist5k", scale="unit")
_TRAIN = TrainConfig(steps=6000, batch_size=100, log_every=200, eval_every=2000,
                     sample_every=2000, checkpoint_every=2000)
_OPTIM = OptimConfig(learning_rate=1e-3, schedule="cosine", warmup_steps=200, ema_decay=0.999)


def _experiment(model, data=_BINARY_MNIST, eval_cfg=VAEEvalConfig(), **train_overrides):
    return lambda: ExperimentConfig(model=model, data=data, optim=_OPTIM, eval=eval_cfg,
                                    train=dataclasses.replace(_TRAIN, **train_overrides))


def _ae_recipe(name: str, description: str) -> Recipe:
    return Recipe(name=name, description=description, config_cls=AEConfig,
                  default=_experiment(AEConfig(name=name), _UNIT_MNIST, EvalConfig(), steps=3000),
                  build=_build_ae, check=_check, init=_init_ae, loss=_ae_loss,
                  sampler=_ae_sampler)


def _vae_recipe(name: str, description: str, model: VAEConfig, **train) -> Recipe:
    return Recipe(name=name, description=description, config_cls=VAEConfig,
                  default=_experiment(model, **train), build=_build_vae, check=_check,
                  init=_init_vae, loss=_vae_loss, sampler=_vae_sampler,
                  likelihoods=_vae_likelihoods)


RECIPES: tuple[Recipe, ...] = (
    _ae_recipe("ae", "autoencoder, L2 reconstruction (mnist5k in [0, 1])"),
    _ae_recipe("rae", "regularized autoencoder, L2 + latent penalty"),
    _ae_recipe("dae", "denoising autoencoder, reconstructs x from a corrupted x"),
    _vae_recipe("vae", "VAE, MLP encoder/decoder, Bernoulli likelihood, ELBO",
                VAEConfig(name="vae")),
    _vae_recipe("conv_vae", "VAE, convolutional encoder/decoder, Bernoulli likelihood",
                VAEConfig(name="conv_vae", architecture="conv", hidden=(32, 64)), steps=3000),
    _vae_recipe("beta_vae", "beta-VAE (beta = 4), MLP, Bernoulli likelihood",
                VAEConfig(name="beta_vae", beta=4.0, latent_dim=10)),
    _vae_recipe("hvae", "Markovian hierarchical VAE, two stochastic layers",
                VAEConfig(name="hvae", num_layers=2, hidden=(512, 256), latent_dim=32)),
    _vae_recipe("iwae", "VAE trained on the importance-weighted bound (k = 5)",
                VAEConfig(name="iwae", objective="iwae", train_k=5), steps=3000),
)

# Tiny variants (tests, smoke runs): the contract test over the model table trains each row so.
_TINY_MLP = ("model.hidden=(32,)", "model.latent_dim=4")
_TINY = {"conv_vae": ("model.hidden=(4,8)", "model.latent_dim=4"),
         "hvae": _TINY_MLP + ("model.latent_hidden=(8,)",)}
RECIPES = tuple(dataclasses.replace(r, tiny=_TINY.get(r.name, _TINY_MLP)) for r in RECIPES)
