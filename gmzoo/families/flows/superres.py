"""A conditional normalizing flow for x f super-resolution in the spirit of SRFlow (Lugmayr et
al. 2020, "SRFlow: Learning the Super-Resolution Space with Normalizing Flow"):
``gmzoo train cond_flow``.

The target y' is the spine's dequantized image in [0, 1)^D (``data.dequantize=true
data.scale=unit``, D = H W C); the source is a low-resolution image x_lr ``[B, H/f, W/f, C]``.
A small conv encoder g maps x_lr to a feature map u = g(x_lr) ``[B, H/f, W/f, F]``, which is
the ``cond`` of a Glow over the high-resolution image (:class:`~gmzoo.families.flows.models.
Glow`: every affine coupling's network takes u, resized to the coupling's own resolution by
:func:`~gmzoo.families.flows.models.cond_at`). With y = logit(alpha + (1 - 2 alpha) y') (the
logit transform of :class:`~gmzoo.families.flows.family.ImageFlow`) and f the flow,

    log p(y' | x_lr) = log p_Z(f(y; u)) + log|det df(y; u)/dy| + log|det dy/dy'|     (nats)

exactly: for a fixed x_lr, y -> f(y; u) is a bijection (u only feeds the coupling networks), and
p_Z is Glow's prior (split priors of the kept halves, a per-channel top prior). The loss is the
conditional NLL -log p(y' | x_lr) (:func:`gmzoo.losses.nll.nll_loss`); its bits/dim add log L
per dimension as the flows' do, (NLL / D + log L) / log 2, a bound on the conditional NLL of the
discrete image given x_lr.

The source is the box-filtered *clean* image, x_lr = ``paired.downsample(c, f)`` with c =
(floor(L y') + 1/2) / L the centre of y''s dequantization bin (the stored level, recovered from
y' inside the compiled step). Not of the dequantized y' itself: its f x f block means would be
fixed by x_lr exactly, so y' given x_lr would lie on an affine subspace of dimension
D (1 - 1/f^2), where a density is unbounded (the flow could push -log p to -infinity by
collapsing the block-mean directions) and the dequantization bound above would not hold (x_lr
would vary inside a bin). With the clean source, x_lr is a function of the discrete image, the
block means of y' keep the dequantization noise, and log p(y' | x_lr) is a proper density.

- Encoder: ``encoder_layers`` 3x3 convolutions of ``features`` channels at the low resolution,
  ReLU between them (the last is linear).
- Sampling (``translate``): y' = logit^-1(f^-1(T eps; u)), eps ~ N(0, I), every Gaussian's std
  scaled by the temperature T = ``sample.temperature`` (SRFlow samples at 0.8-0.9; T = 0 decodes
  the prior means: a deterministic, "mean-like" super-resolution), in one compiled call, clipped
  to [0, 1]. The baseline is bicubic upsampling of x_lr clipped to [0, 1]; the source is shown as
  x_lr repeated f x f. T is a model field only because the spine's ``translate`` hook is handed
  the model config and not the ``sample`` section.
- ``gmzoo evaluate`` reports PSNR / SSIM of the outputs and of the baseline against y', FD / KID
  of the outputs, and the held-out conditional NLL (labelled conditional: the per-pixel
  baselines beside it are unconditional densities of y').

How it differs from SRFlow: SRFlow's encoder is a deep RRDB network (ESRGAN's) whose features
from several blocks are stacked; ours is a few plain convolutions trained jointly from scratch.
SRFlow conditions each flow step twice, through an affine injector h' = exp(s(u)) h + b(u)
(log-det sum s(u)) and through conditional affine couplings, and its split priors see u; here u
enters only the couplings' networks (no affine injector), and Glow's priors are unconditional
(the split prior sees the kept half only). No transition steps (ActNorm + 1x1 convolution
without a coupling after each squeeze).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from gmzoo.config import (ConfigError, DataConfig, EvalConfig, ExperimentConfig, OptimConfig,
                          SampleConfig, TrainConfig, at_least, non_negative, positive)
from gmzoo.data import paired
from gmzoo.families.flows import bijectors, models
from gmzoo.families.flows.family import check_unit_data
from gmzoo.losses.nll import nll_loss
from gmzoo.nn.tree import cast_inputs
from gmzoo.recipes.base import Recipe, Translation


@dataclasses.dataclass(frozen=True)
class CondFlowConfig:
    """The conditional flow: x ``factor`` super-resolution; the low-resolution encoder's
    ``encoder_layers`` 3x3 convolutions of ``features`` channels; Glow's ``num_levels`` levels
    of ``steps_per_level`` steps (couplings with ``num_layers`` convolutions of ``hidden``
    channels); the logit transform's ``logit_alpha``. The sampling temperature is
    ``sample.temperature`` (:class:`CondFlowSampleConfig`)."""

    name: str = "cond_flow"
    factor: int = at_least(4, 2)
    features: int = positive(32)
    encoder_layers: int = positive(3)
    num_levels: int = positive(2)
    steps_per_level: int = positive(8)
    hidden: int = positive(128)
    num_layers: int = positive(2)
    logit_alpha: float = non_negative(0.05)


@dataclasses.dataclass(frozen=True)
class CondFlowSampleConfig(SampleConfig):
    """``temperature`` T of the translations (every latent ~ N(mu, (T sigma)^2); SRFlow samples
    at 0.8-0.9; 0: the prior means, a deterministic "mean-like" super-resolution)."""

    temperature: float = non_negative(0.8)


def low_resolution(y: jax.Array, factor: int, num_levels: int) -> jax.Array:
    """The source x_lr ``[B, H/f, W/f, C]`` of dequantized images y' ``[B, H, W, C]`` in
    [0, 1): the f x f block means of the clean image (floor(L y') + 1/2) / L (module
    docstring: why not of y')."""
    levels = jnp.clip(jnp.floor(y * num_levels), 0, num_levels - 1)
    return paired.downsample((levels + 0.5) / num_levels, factor)


class LowResEncoder(nn.Module):
    """u = g(x_lr): ``num_layers`` 3x3 convolutions of ``features`` channels, ReLU between
    them; ``[B, h, w, C] -> [B, h, w, F]``."""

    features: int = 32
    num_layers: int = 3

    @nn.compact
    def __call__(self, x_lr: jax.Array) -> jax.Array:
        h = x_lr
        for k in range(self.num_layers):
            h = nn.Conv(self.features, (3, 3), name=f"conv_{k}")(h)
            if k < self.num_layers - 1:
                h = nn.relu(h)
        return h


class SuperResFlow(nn.Module):
    """p(y' | x_lr): the logit transform, then ``flow`` (a :class:`~gmzoo.families.flows.
    models.MultiScaleFlow`) conditioned on ``encoder(x_lr)`` (module docstring):

        __call__(y', x_lr) = log_prob(y', x_lr) -> [B]        log p(y' | x_lr) in nats
        encode(y', x_lr, standardized=False) -> latents        the flow's, of logit(y')
        decode(latents, x_lr, standardized=False) -> y'        the exact inverse (unclipped)
        sample(key, x_lr, temperature) -> y' [B, f h, f w, C]  in [0, 1]
    """

    flow: nn.Module
    encoder: nn.Module
    factor: int = 4
    logit_alpha: float = 0.05

    def _cond(self, y_shape, x_lr: jax.Array) -> jax.Array:
        b, h, w, c = y_shape
        want = (b, h // self.factor, w // self.factor, c)
        if x_lr.shape != want or h % self.factor or w % self.factor:
            raise ValueError(f"x_lr must be [B, H/f, W/f, C] = {want} for images {tuple(y_shape)}"
                             f" and factor {self.factor}, got shape {tuple(x_lr.shape)}")
        return self.encoder(x_lr)  # [B, H/f, W/f, F]

    def __call__(self, y: jax.Array, x_lr: jax.Array) -> jax.Array:
        return self.log_prob(y, x_lr)

    def log_prob(self, y: jax.Array, x_lr: jax.Array) -> jax.Array:
        cond = self._cond(y.shape, x_lr)
        log_det = jnp.zeros(y.shape[:1], jnp.float32)
        if self.logit_alpha > 0:
            y, log_det = bijectors.logit_transform(y, self.logit_alpha)
        return self.flow.log_prob(y, cond) + log_det

    def encode(self, y: jax.Array, x_lr: jax.Array, standardized: bool = False) -> list:
        cond = self._cond(y.shape, x_lr)
        if self.logit_alpha > 0:
            y, _ = bijectors.logit_transform(y, self.logit_alpha)
        return self.flow.encode(y, cond, standardized)

    def decode(self, latents, x_lr: jax.Array, standardized: bool = False) -> jax.Array:
        b, h, w, c = x_lr.shape
        y = self.flow.decode(latents, self._cond((b, h * self.factor, w * self.factor, c), x_lr),
                             standardized)
        if self.logit_alpha > 0:
            y, _ = bijectors.logit_inverse(y, self.logit_alpha)
        return y

    def sample(self, key: jax.Array, x_lr: jax.Array, temperature: float) -> jax.Array:
        b, h, w, c = x_lr.shape
        shape = (b, h * self.factor, w * self.factor, c)
        y = self.flow.sample(key, shape, temperature, self._cond(shape, x_lr))
        if self.logit_alpha > 0:
            y, _ = bijectors.logit_inverse(y, self.logit_alpha)
        return jnp.clip(y, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class CondFlowNets:
    """What ``build`` makes: the :class:`SuperResFlow`, the shape of one image and the number
    of levels L of the stored data (y' = (x + u) / L; the source reads x back)."""

    net: SuperResFlow
    event_shape: tuple[int, ...]
    num_levels: int

    def source(self, y: jax.Array) -> jax.Array:
        """x_lr of dequantized images y' (:func:`low_resolution`)."""
        return low_resolution(y, self.net.factor, self.num_levels)

    def log_prob(self, params: Any, y: jax.Array) -> jax.Array:
        """log p(y' | x_lr(y')) ``[B]`` in nats."""
        return self.net.apply({"params": params}, *cast_inputs(params, y, self.source(y)))


def _build(m: CondFlowConfig, image_shape, num_levels) -> CondFlowNets:
    flow = models.Glow(num_levels=m.num_levels, steps_per_level=m.steps_per_level,
                       hidden=m.hidden, num_layers=m.num_layers)
    net = SuperResFlow(flow, LowResEncoder(m.features, m.encoder_layers), factor=m.factor,
                       logit_alpha=m.logit_alpha)
    return CondFlowNets(net, tuple(int(s) for s in image_shape), int(num_levels))


def _init(nets: CondFlowNets, key: jax.Array, batch: dict) -> dict:
    y = batch["image"]
    return nets.net.init(key, y, nets.source(y))  # ActNorm fits this batch


def _loss(m: CondFlowConfig, nets: CondFlowNets):
    """-mean log p(y' | x_lr) in nats; ``bits_per_dim`` counts log L per dimension."""
    del m
    return functools.partial(nll_loss, log_prob_fn=lambda p, y, label, key: nets.log_prob(p, y),
                             conditional=False,
                             dequantization_nats_per_dim=math.log(nets.num_levels))


def _likelihoods(m: CondFlowConfig, nets: CondFlowNets, eval_cfg: EvalConfig
                 ) -> dict[str, Callable]:
    del eval_cfg
    label = (f"exact conditional log p(y | x_lr), x_lr = {m.factor}x{m.factor} block means "
             "(change of variables)")
    return {label: lambda params, y, key: nets.log_prob(params, y)}


def _translate(m: CondFlowConfig, nets: CondFlowNets, *,
               sampling: CondFlowSampleConfig = CondFlowSampleConfig()) -> Callable:
    """``translate(params, batch, key) -> Translation`` on a prepared batch: a sample of
    p(y' | x_lr) at ``sampling.temperature`` (one call), bicubic upsampling of x_lr clipped to [0, 1],
    x_lr repeated f x f as the source, the batch's y' as the target."""

    def translate(params, batch, key):
        y = batch["image"]  # [B, H, W, C]
        x_lr = nets.source(y)  # [B, H/f, W/f, C]
        out = nets.net.apply({"params": params}, key, *cast_inputs(params, x_lr),
                             float(sampling.temperature), method=SuperResFlow.sample)
        f = m.factor
        shown = jnp.repeat(jnp.repeat(x_lr, f, axis=1), f, axis=2)
        baseline = jnp.clip(paired.bicubic_upsample(x_lr, f), 0.0, 1.0)
        return Translation(source=shown, output=out.astype(jnp.float32),
                           target=y.astype(jnp.float32), baseline=baseline)

    return translate


def _check(config: ExperimentConfig, image_shape: tuple[int, ...]) -> None:
    m, d = config.model, config.data
    check_unit_data(config)
    h, w = image_shape[:2]
    if h % m.factor or w % m.factor:
        allowed = [k for k in range(2, min(h, w) + 1) if h % k == 0 and w % k == 0]
        raise ConfigError(f"model.factor={m.factor} must divide {d.name}'s image size {h}x{w} "
                          f"(the low-resolution image is its block mean); allowed: "
                          f"{', '.join(map(str, allowed)) or 'none'}")
    k = 2 ** m.num_levels
    if h % k or w % k:
        raise ConfigError(f"{d.name} images are {h}x{w}: model.num_levels={m.num_levels} halves "
                          f"them {m.num_levels} times, so H and W must be multiples of {k}")


# --- defaults -----------------------------------------------------------------------------

def _default() -> ExperimentConfig:
    """The flows' training settings (:mod:`gmzoo.families.flows.family`: mnist5k dequantized in
    [0, 1), Adam 1e-3 with cosine decay, warm-up, clipping and EMA, 3,000 steps of 64) with the
    shared eval section and the translations' ``sample.temperature``."""
    return ExperimentConfig(
        model=CondFlowConfig(), data=DataConfig(name="mnist5k", scale="unit", dequantize=True),
        optim=OptimConfig(learning_rate=1e-3, schedule="cosine", warmup_steps=200,
                          ema_decay=0.999, grad_clip_norm=1.0),
        train=TrainConfig(steps=3000, batch_size=64, log_every=100, eval_every=1500,
                          sample_every=1500, checkpoint_every=1500),
        eval=EvalConfig(), sample=CondFlowSampleConfig())


RECIPES: tuple[Recipe, ...] = (
    Recipe(name="cond_flow",
           description="conditional Glow p(y | x_lr) for x4 super-resolution (SRFlow-like: a "
                       "conv encoder of the low-res image into every coupling); samples at "
                       "sample.temperature",
           config_cls=CondFlowConfig, default=_default, build=_build, check=_check, init=_init,
           init_batch=0, loss=_loss, sampler=None, likelihoods=_likelihoods,
           translate=_translate, baseline="bicubic upsampling",
           sample_config=CondFlowSampleConfig,
           tiny=("model.factor=2", "model.num_levels=1", "model.steps_per_level=1",
                 "model.hidden=8", "model.num_layers=1", "model.features=4",
                 "model.encoder_layers=2")),
)
