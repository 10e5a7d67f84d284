"""Recipes of the paired image-to-image GANs: ``pix2pix`` and ``srgan`` on images in [-1, 1].

Both are two-player GANs on the spine's ``train_step`` hook, as in :mod:`gmzoo.recipes.gan`
(:func:`gmzoo.train.gan_step.make_gan_train_step`, one Adam per player via ``players_tx``,
batch statistics kept per player). The data pipeline gives ordinary batches ``{"image", "label"}``;
the recipe builds the paired example from the image inside the compiled step, once per step (in
the step's ``prepare``), so that both players see the same pair: target y = the image, source

- pix2pix: x = ``paired.make_pair(model.task, y, key)``'s source (a masked, inverted, edge or
  noisy image; the inpainting source carries the mask as an extra channel);
- srgan: x = ``paired.downsample(y, model.factor)``, the box-filtered low-resolution image.

Objectives (each player minimises its own; D sees G's output with G frozen and vice versa):

- pix2pix (Isola et al. 2017, eq. 4): G* = arg min_G max_D L_cGAN(G, D) + lambda L_L1(G), with a
  U-Net G and a PatchGAN D that judges the pair concat(x, y) on channels:
      D: 1/2 [d_loss(D(x, y), D(x, G(x)))]     ("we divide the objective by 2 while optimizing
                                                D", sec. 3.3; d_loss of ``model.loss``)
      G: g_loss(D(x, G(x))) + lambda mean|y - G(x)|,  lambda = ``model.l1_weight`` (100)
- srgan (Ledig et al. 2017, eq. 3-5): perceptual loss = content + 10^-3 adversarial, an SRResNet G
  and an unconditional D of the high-resolution image:
      D: d_loss(D(y), D(G(x)))
      G: mean (y - G(x))^2 + w g_loss(D(G(x))),  w = ``model.adversarial_weight`` (1e-3)
  The content loss is the pixel MSE only (``model.content=mse``): the paper's VGG content loss
  needs a fixed pretrained feature net, and gmzoo's SRDiscriminator sows no features to stand in.
  ``model.adversarial_weight=0`` trains the SRResNet of the paper (MSE only).

Networks run in train mode as in :mod:`gmzoo.recipes.gan` (batch statistics of the batch they
see; dropout on if ``model.dropout_rate`` > 0), also at translation time: the spine's
``translate`` gets parameters only (the EMA generator's, whose statistics are then its own), and
pix2pix itself "appl[ies] dropout at test time, and ... batch normalization using the statistics
of the test batch" (Isola et al. sec. 3.3). A translated batch is normalised by its own
statistics, so an output depends a little on the other images of its batch: translate batches
of tens of images, not one. pix2pix's default drops the paper's dropout (its noise z): on
mnist5k inpainting it cost 0.5-0.8 dB of test PSNR and the paper finds the outputs nearly
deterministic anyway.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from gmzoo.config import ConfigError, DataConfig, ExperimentConfig
from gmzoo.data import paired
from gmzoo.losses import gan as gan_losses
from gmzoo.losses import image2image as i2i_losses
from gmzoo.models import image2image as i2i_models
from gmzoo.recipes.base import Recipe, Translation
from gmzoo.recipes.gan import GAN_ADAM, experiment, forward, two_player_loss, two_player_step
from gmzoo.train.gan_step import DISCRIMINATOR, GENERATOR

CONTENT_LOSSES: tuple[str, ...] = ("mse",)


@dataclasses.dataclass(frozen=True)
class Pix2PixConfig:
    """pix2pix: U-Net generator, PatchGAN discriminator of (source, image) pairs, cGAN + L1.
    G's optimizer is ``optim``; D's is ``optim`` with ``d_learning_rate``."""

    name: str = "pix2pix"
    task: str = "inpaint"  # inpaint | invert | edges | denoise (see gmzoo.data.paired)
    mask_fraction: float = 0.5  # inpaint: hole side / min(H, W)
    edge_threshold: float = 0.25  # edges: Sobel magnitude counted as an edge
    noise_std: float = 0.2  # denoise: noise std in [-1, 1] units
    features: int = 32  # F: U-Net widths F, 2F, 4F, 8F, 8F ...
    max_depth: int = 8  # at most this many stride-2 levels (H, W halve while even)
    dropout_rate: float = 0.0  # dropout in the first 3 decoder blocks, on at test time too (the
    #                            paper's noise z: 0.5; here it cost 0.5-0.8 dB of test PSNR)
    norm: str = "batch"  # batch | instance, in both networks
    d_features: int = 32  # PatchGAN widths
    d_layers: int = 1  # PatchGAN stride-2 layers: receptive field 16 (1), 34 (2), 70 (3)
    loss: str = "non_saturating"  # minimax | non_saturating | hinge | least_squares | wasserstein
    l1_weight: float = 100.0  # lambda
    d_learning_rate: float = 2e-4


@dataclasses.dataclass(frozen=True)
class SRGANConfig:
    """SRGAN: SRResNet generator (x ``factor``), SRGAN discriminator, MSE + adversarial."""

    name: str = "srgan"
    factor: int = 4  # 2 | 4: low resolution = image / factor (box filter)
    features: int = 16  # SRResNet width F (paper: 64)
    num_blocks: int = 4  # residual blocks (paper: 16)
    d_features: int = 16  # discriminator widths F 2^i
    d_stages: int = 2  # discriminator stride-2 stages
    d_dense: int = 128  # discriminator dense width (paper: 1024)
    content: str = "mse"  # mse (pixel-wise; see the module docstring)
    loss: str = "non_saturating"  # minimax | non_saturating | hinge | least_squares | wasserstein
    adversarial_weight: float = 1e-3  # w; 0: SRResNet (MSE only)
    d_learning_rate: float = 1e-4


@dataclasses.dataclass(frozen=True)
class I2INets:
    """The two players and the model config that says how to build their pair."""

    generator: nn.Module
    discriminator: nn.Module
    config: Pix2PixConfig | SRGANConfig


def _is_pix2pix(m) -> bool:
    return isinstance(m, Pix2PixConfig)


# --- checks -------------------------------------------------------------------------------

def _check(config: ExperimentConfig, image_shape: tuple[int, int, int]) -> None:
    m, d = config.model, config.data
    h, w, _ = (int(s) for s in image_shape)
    if m.loss not in gan_losses.GAN_LOSSES:
        raise ConfigError(f"model.loss={m.loss!r}; choose one of {', '.join(gan_losses.GAN_LOSSES)}")
    widths = (("features", "max_depth", "d_features", "d_layers") if _is_pix2pix(m) else
              ("features", "num_blocks", "d_features", "d_stages", "d_dense"))
    for field in widths:
        if getattr(m, field) < 1:
            raise ConfigError(f"model.{field}={getattr(m, field)} must be >= 1")
    if not m.d_learning_rate > 0:
        raise ConfigError(f"model.d_learning_rate={m.d_learning_rate} must be > 0")
    if _is_pix2pix(m):
        if m.task not in paired.TASKS:
            raise ConfigError(f"model.task={m.task!r}; choose one of {', '.join(paired.TASKS)}")
        if m.norm not in i2i_models.NORMS:
            raise ConfigError(f"model.norm={m.norm!r}; choose one of {', '.join(i2i_models.NORMS)}")
        if not 0.0 < m.mask_fraction <= 1.0:
            raise ConfigError(f"model.mask_fraction={m.mask_fraction} must be in (0, 1]")
        for field in ("edge_threshold", "noise_std", "l1_weight"):
            if not getattr(m, field) >= 0:
                raise ConfigError(f"model.{field}={getattr(m, field)} must be >= 0")
        if not 0.0 <= m.dropout_rate < 1.0:
            raise ConfigError(f"model.dropout_rate={m.dropout_rate} must be in [0, 1)")
        error = i2i_models.pix2pix_shape_error((h, w, image_shape[2]), m.max_depth)
        if error:
            raise ConfigError(f"{d.name} images {tuple(image_shape)} do not fit model {m.name}: {error}")
        if min(i2i_models.patch_output_size(s, m.d_layers) for s in (h, w)) < 1:
            fits = [k for k in range(1, m.d_layers) if
                    min(i2i_models.patch_output_size(s, k) for s in (h, w)) >= 1]
            fix = (f"use model.d_layers <= {max(fits)}" if fits else
                   "the PatchGAN needs images of at least 8x8")
            raise ConfigError(f"model.d_layers={m.d_layers}: the PatchGAN's stride-2 layers leave "
                              f"no logit of the {h}x{w} {d.name} images; {fix}")
    else:
        if m.factor not in i2i_models.SR_SCALES:
            raise ConfigError(f"model.factor={m.factor}; choose one of "
                              f"{', '.join(map(str, i2i_models.SR_SCALES))}")
        if h % m.factor or w % m.factor:
            raise ConfigError(f"model.factor={m.factor} must divide {d.name}'s image size {h}x{w} "
                              f"(the low-resolution image is its {m.factor}x{m.factor} block mean)")
        if m.content not in CONTENT_LOSSES:
            raise ConfigError(f"model.content={m.content!r}; choose one of {', '.join(CONTENT_LOSSES)} "
                              "(no fixed feature net for a VGG-style content loss)")
        if not m.adversarial_weight >= 0:
            raise ConfigError(f"model.adversarial_weight={m.adversarial_weight} must be >= 0")
    if d.binarize != "none" or d.scale != "symmetric":
        raise ConfigError(f"model {m.name} translates images in [-1, 1] (tanh): set "
                          "data.binarize=none data.scale=symmetric")


# --- networks and pairs -------------------------------------------------------------------

def _build(m, image_shape, num_levels) -> I2INets:
    del num_levels
    channels = int(image_shape[-1])
    if _is_pix2pix(m):
        g = i2i_models.Pix2PixGenerator(features=m.features, out_channels=channels,
                                        max_depth=m.max_depth, norm=m.norm,
                                        dropout_rate=m.dropout_rate)
        d = i2i_models.PatchDiscriminator(features=m.d_features, num_layers=m.d_layers,
                                          paired=True, norm=m.norm)
    else:
        g = i2i_models.SRGenerator(scale=m.factor, num_blocks=m.num_blocks, features=m.features,
                                   out_channels=channels)
        d = i2i_models.SRDiscriminator(features=m.d_features, num_stages=m.d_stages,
                                       dense_features=m.d_dense)
    return I2INets(g, d, m)


def _source(m, image: jax.Array, key: jax.Array) -> jax.Array:
    """The generator's input x for target images ``image`` [B, H, W, C] (module docstring)."""
    if _is_pix2pix(m):
        pair_cfg = paired.PairConfig(m.mask_fraction, m.edge_threshold, m.noise_std)
        return paired.make_pair(m.task, image, key, pair_cfg)[0]  # [B, H, W, C'] (C' by task)
    return paired.downsample(image, m.factor)  # [B, H / f, W / f, C]


def _with_source(m, batch: dict, key: jax.Array) -> dict:
    return {**batch, "source": _source(m, batch["image"], key)}


def _shown(m, source: jax.Array, target: jax.Array) -> jax.Array:
    """The source as an image of the target's shape: inpaint drops the mask channel, edges
    repeats its one channel, srgan repeats each low-resolution pixel f x f times."""
    if not _is_pix2pix(m):
        return jnp.repeat(jnp.repeat(source, m.factor, axis=1), m.factor, axis=2)
    if m.task == "inpaint":
        return source[..., :target.shape[-1]]
    return jnp.broadcast_to(source, target.shape)  # edges: [B, H, W, 1] -> [B, H, W, C]


def _init(nets: I2INets, key: jax.Array, batch: dict) -> dict:
    """``{"params": {"generator", "discriminator"}, "generator": {"batch_stats"}, ...}``."""
    g_key, d_key, pair_key = jax.random.split(key, 3)
    y = batch["image"]  # [B, H, W, C]
    x = _source(nets.config, y, pair_key)
    d_args = (y, x) if _is_pix2pix(nets.config) else (y,)
    per_player = {GENERATOR: nets.generator.init({"params": g_key, "dropout": g_key}, x),
                  DISCRIMINATOR: nets.discriminator.init(d_key, *d_args)}
    variables: dict[str, Any] = {"params": {p: v["params"] for p, v in per_player.items()}}
    for player, v in per_player.items():
        if "batch_stats" in v:
            variables[player] = {"batch_stats": v["batch_stats"]}
    return variables


# --- objectives ---------------------------------------------------------------------------

def _terms(m) -> tuple[str, Callable, float, float, float]:
    """(name, reconstruction loss, its weight, adversarial weight, D loss scale)."""
    if _is_pix2pix(m):
        return "l1", i2i_losses.l1_loss, m.l1_weight, 1.0, 0.5
    return "mse", i2i_losses.mse_loss, 1.0, m.adversarial_weight, 1.0


def _objectives(nets: I2INets) -> tuple[Callable, Callable]:
    """``d_objective(d, g, batch, key, model_state)`` and ``g_objective(g, d, batch, key,
    model_state)`` on a batch holding ``"source"``, each ``-> (loss, (metrics, new state))``."""
    m, G, D = nets.config, nets.generator, nets.discriminator
    d_loss_of, g_loss_of = gan_losses.get(m.loss)
    recon_name, recon_of, recon_weight, adv_weight, d_scale = _terms(m)

    def judge(d, d_state, image, source, key):
        args = (image, source) if _is_pix2pix(m) else (image,)  # pix2pix's D sees the pair
        return forward(D, d, d_state, key, *args)  # [B, h, w, 1] patches | [B]

    def d_objective(d, g, batch, key, model_state):
        """d_scale * d_loss(D(x, y), D(x, G(x))) with G frozen."""
        real, source = batch["image"], batch["source"]
        g_key, d_key = jax.random.split(key)
        fake, _ = forward(G, g, model_state.get(GENERATOR, {}), g_key, source)
        fake = jax.lax.stop_gradient(fake).astype(real.dtype)  # [B, H, W, C]
        d_state = model_state.get(DISCRIMINATOR, {})
        real_logits, d_state = judge(d, d_state, real, source, d_key)
        fake_logits, d_state = judge(d, d_state, fake, source, d_key)
        loss = d_scale * d_loss_of(real_logits, fake_logits)
        metrics = {"real_score": jnp.mean(real_logits.astype(jnp.float32)),
                   "fake_score": jnp.mean(fake_logits.astype(jnp.float32))}
        new_state = dict(model_state)
        if DISCRIMINATOR in model_state:
            new_state[DISCRIMINATOR] = d_state
        return loss, (metrics, new_state)

    def g_objective(g, d, batch, key, model_state):
        """adv_weight * g_loss(D(x, G(x))) + recon_weight * recon(G(x), y) with D frozen."""
        real, source = batch["image"], batch["source"]
        g_key, d_key = jax.random.split(key)
        fake, g_state = forward(G, g, model_state.get(GENERATOR, {}), g_key, source)
        fake_logits, _ = judge(d, model_state.get(DISCRIMINATOR, {}), fake, source, d_key)
        adversarial = g_loss_of(fake_logits)
        recon = recon_of(fake, real)
        new_state = dict(model_state)
        if GENERATOR in model_state:
            new_state[GENERATOR] = g_state
        metrics = {"adversarial": adversarial, recon_name: recon,
                   "fake_score": jnp.mean(fake_logits.astype(jnp.float32))}
        return adv_weight * adversarial + recon_weight * recon, (metrics, new_state)

    return d_objective, g_objective


def _loss(m, nets: I2INets) -> Callable:
    """Held-out ``loss_fn(params, batch, key) -> (g_loss, metrics)``: both players' losses on a
    test batch paired with ``key``, networks in train mode with the batch's own statistics."""
    return two_player_loss(*_objectives(nets),
                           prepare=lambda batch, key: _with_source(m, batch, key))


def _train_step(config: ExperimentConfig, nets: I2INets, *, prepare, **kw):
    """The spine's ``train_step`` hook (``gan.two_player_step``); each step's ``prepare`` also
    builds the pair, so both players see the same sources."""
    m = config.model

    def prepare_pair(batch, key):
        space_key, pair_key = jax.random.split(key)
        if prepare is not None:
            batch = prepare(batch, space_key)
        return _with_source(m, batch, pair_key)

    d_objective, g_objective = _objectives(nets)
    return two_player_step(config, d_objective, g_objective, d_learning_rate=m.d_learning_rate,
                           prepare=prepare_pair, **kw)


def _translate(m, nets: I2INets, *, sampling=None) -> Callable:
    """``translate(params, batch, key) -> Translation`` on a prepared batch: the source made
    from the batch's images with ``key``, G(source) in train mode (module docstring), and the
    baseline: pix2pix, the source shown as an image; srgan, clipped bicubic upsampling."""

    def translate(params, batch, key):
        pair_key, g_key = jax.random.split(key)
        target = batch["image"]  # [B, H, W, C]
        source = _source(m, target, pair_key)
        output, _ = forward(nets.generator, params[GENERATOR], {}, g_key, source)
        shown = _shown(m, source, target).astype(jnp.float32)  # [B, H, W, C]
        if _is_pix2pix(m):
            baseline = shown
        else:
            baseline = jnp.clip(paired.bicubic_upsample(source, m.factor), -1.0, 1.0)
        return Translation(source=shown, output=output.astype(jnp.float32),
                           target=target.astype(jnp.float32),
                           baseline=baseline.astype(jnp.float32))

    return translate


# --- defaults -----------------------------------------------------------------------------

_MNIST = DataConfig(name="mnist5k", scale="symmetric")


def _recipe(name: str, description: str, config_cls: type, model, baseline: str, **kw) -> Recipe:
    return Recipe(name=name, description=description, config_cls=config_cls,
                  default=experiment(model, **kw), build=_build, check=_check, init=_init,
                  loss=_loss, sampler=None, train_step=_train_step, translate=_translate,
                  baseline=baseline)


RECIPES: tuple[Recipe, ...] = (
    _recipe("pix2pix", "pix2pix: U-Net + PatchGAN of (source, image) pairs, cGAN + 100 L1 "
            "(inpainting by default; model.task=invert|edges|denoise)",
            Pix2PixConfig, Pix2PixConfig(), "the source unchanged (the input shown as an image)",
            data=_MNIST, optim=dataclasses.replace(GAN_ADAM, learning_rate=1e-3), steps=1000,
            batch_size=32, log_every=100, eval_every=500, sample_every=500,
            checkpoint_every=500),
    _recipe("srgan", "SRGAN: SRResNet + discriminator, MSE + 1e-3 adversarial (x4 on mnist5k)",
            SRGANConfig, SRGANConfig(), "bicubic upsampling",
            data=_MNIST, optim=dataclasses.replace(GAN_ADAM, learning_rate=1e-3, b1=0.9),
            steps=1000, batch_size=32, log_every=100, eval_every=500, sample_every=500,
            checkpoint_every=500),
)

# Tiny variants (tests, smoke runs): the contract test over the model table trains each row so.
_TINY = {"pix2pix": ("model.features=4", "model.d_features=4"),
         "srgan": ("model.factor=2", "model.features=4", "model.num_blocks=1",
                   "model.d_features=4", "model.d_dense=8")}
RECIPES = tuple(dataclasses.replace(r, tiny=_TINY[r.name]) for r in RECIPES)
