"""Normalizing flows on the spine: ``gmzoo train realnvp | glow``.

The data space is the spine's dequantized one (``data.dequantize=true``, ``data.scale=unit``):
x' = (x + u) / L in [0, 1)^D, fresh u every step. The model (:class:`ImageFlow`) maps x' by
the logit transform y = logit(alpha + (1 - 2 alpha) x') (``model.logit_alpha``; 0: none) and
then by the flow (:mod:`gmzoo.families.flows.models`) to its latents, so

    log p(x') = log p_Z(f(y)) + log|det df/dy| + log|det dy/dx'|          (nats per image)

with every log-determinant counted, the logit's included. ``gmzoo evaluate`` adds the
dequantization's D log L and reports bits/dim = (NLL / D + log L) / log 2, an upper bound on
the discrete data's [PITFALLS: rosinality/glow-pytorch#3, a missing logit term].

- The loss is the mean NLL in nats (:func:`gmzoo.losses.nll.nll_loss`); ActNorm's
  data-dependent initialisation sees a whole training batch (``Recipe.init_batch = 0``).
- Sampling: one compiled call, every latent drawn at ``sample.temperature`` times its prior's
  standard deviation (Glow's temperature), mapped back through the flow and the logit.
- Class-conditional with ``model.num_classes`` > 0: a learned embedding of the label,
  broadcast over the image, is concatenated to the input of every coupling's network; the
  evaluator then reports the exact marginal over the classes.
- ``model.dequantization=variational`` (Ho et al. 2019, Flow++ sec. 3.1;
  :mod:`gmzoo.families.flows.dequantization`): the model draws u ~ q(u | x) itself from a
  learned conditional flow (exactly uniform at init) and trains on the bound on the discrete
  data, log P(x) >= E_q [log p((x + u) / L) - D log L - log q(u | x)], so the data space is the
  integer levels (``data.scale=levels data.dequantize=false``, refused otherwise) and bits/dim
  = NLL / (D log 2) with nothing added. Held out: that bound with one u per example, and the
  importance-weighted log (1/K) sum_k exp(bound_k) with K = ``eval.importance_samples``.
  Samples are the levels floor(L x').
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
                          SampleConfig, TrainConfig, at_least, choice, non_negative, positive)
from gmzoo.families.flows import bijectors, dequantization, models
from gmzoo.losses.nll import marginal_log_prob, nll_loss
from gmzoo.losses.vae import log_mean_exp_chunked
from gmzoo.nn.tree import cast_inputs
from gmzoo.recipes.base import Recipe, check_class_label, sample_labels


@dataclasses.dataclass(frozen=True)
class FlowSampleConfig(SampleConfig):
    """``temperature`` T (every latent ~ N(mu, (T sigma)^2); 1: the model, 0: the prior
    means), ``class_label`` of a class-conditional model (-1: classes 0..K-1 in turn)."""

    temperature: float = non_negative(1.0)
    class_label: int = at_least(-1, -1)


@dataclasses.dataclass(frozen=True)
class FlowEvalConfig(EvalConfig):
    """``gmzoo evaluate`` options of the flows: ``importance_samples`` K of the
    importance-weighted bound log (1/K) sum_k exp(bound_k) reported beside the one-sample bound
    of a variationally dequantized flow (1: only the one-sample bound)."""

    importance_samples: int = positive(16)


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    """Shared by the flows: the logit transform's ``logit_alpha`` (0: the flow sees x' in
    [0, 1) as it is), class conditioning (``num_classes`` > 0, a label embedding of
    ``class_channels`` channels into every coupling), ``dequantization`` (``uniform``: the data
    space's noise; ``variational``: a learned q(u | x) of ``dequantizer_couplings`` conditional
    couplings with nets of ``dequantizer_hidden`` channels, trained with the flow)."""

    name: str = ""
    logit_alpha: float = non_negative(0.05)
    num_classes: int = non_negative(0)
    class_channels: int = positive(4)
    dequantization: str = choice("uniform", "variational")
    dequantizer_couplings: int = positive(4)
    dequantizer_hidden: int = positive(16)


@dataclasses.dataclass(frozen=True)
class RealNVPConfig(FlowConfig):
    """Real NVP: ``num_scales`` scales (the last without a squeeze), affine couplings whose
    networks have ``num_layers`` convolutions of ``hidden`` channels; ``actnorm`` puts an
    ActNorm before every coupling."""

    name: str = "realnvp"
    num_scales: int = positive(3)
    hidden: int = positive(64)
    num_layers: int = positive(2)
    actnorm: bool = True


@dataclasses.dataclass(frozen=True)
class GlowConfig(FlowConfig):
    """Glow: ``num_levels`` levels of ``steps_per_level`` steps (ActNorm, LU 1x1 convolution,
    affine coupling with a network of ``num_layers`` convolutions of ``hidden`` channels), a
    split with a learned prior between levels."""

    name: str = "glow"
    num_levels: int = positive(2)
    steps_per_level: int = positive(8)
    hidden: int = positive(128)
    num_layers: int = positive(2)


class ImageFlow(nn.Module):
    """The logit transform, then ``flow`` (a :class:`~gmzoo.families.flows.models.
    MultiScaleFlow`), with an optional class embedding as its conditioning:
    ``log_prob(x', label) -> [B]`` and ``sample(key, shape, temperature, label) -> x'``."""

    flow: nn.Module
    logit_alpha: float = 0.05
    num_classes: int = 0
    class_channels: int = 4

    def setup(self):
        self.class_embed = (nn.Embed(self.num_classes, self.class_channels)
                            if self.num_classes else None)

    def _cond(self, label: jax.Array | None) -> jax.Array | None:
        if not self.num_classes:
            if label is not None:
                raise ValueError("got a label, but the flow was built with num_classes=0")
            return None
        if label is None:
            raise ValueError(f"the flow is class-conditional (num_classes={self.num_classes}); "
                             "pass label [B]")
        return self.class_embed(jnp.asarray(label, jnp.int32))[:, None, None, :]  # [B,1,1,E]

    def __call__(self, x: jax.Array, label: jax.Array | None = None) -> jax.Array:
        log_det = jnp.zeros(x.shape[:1], jnp.float32)
        if self.logit_alpha > 0:
            x, log_det = bijectors.logit_transform(x, self.logit_alpha)
        return self.flow.log_prob(x, self._cond(label)) + log_det

    def log_prob(self, x: jax.Array, label: jax.Array | None = None) -> jax.Array:
        return self(x, label)

    def sample(self, key: jax.Array, shape: tuple[int, ...], temperature: float,
               label: jax.Array | None = None) -> jax.Array:
        y = self.flow.sample(key, shape, temperature, self._cond(label))
        if self.logit_alpha > 0:
            y, _ = bijectors.logit_inverse(y, self.logit_alpha)
        return jnp.clip(y, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class FlowNets:
    """What ``build`` makes: the :class:`ImageFlow` (or, with variational dequantization, a
    :class:`~gmzoo.families.flows.dequantization.VariationalDequantizedFlow` around it) and
    the shape of one example."""

    net: ImageFlow | dequantization.VariationalDequantizedFlow
    event_shape: tuple[int, ...]
    num_levels: int  # of the stored data: x' = (x + u) / L

    @property
    def variational(self) -> bool:
        return isinstance(self.net, dequantization.VariationalDequantizedFlow)

    def log_prob(self, params: Any, x: jax.Array, label: jax.Array | None = None) -> jax.Array:
        """log p(x') ``[B]`` of the flow density on [0, 1)^D (the ImageFlow's, also inside a
        variationally dequantized model)."""
        if self.variational:
            return self.net.apply({"params": params}, *cast_inputs(params, x), label,
                                  method=lambda net, *a: net.flow.log_prob(*a))
        return self.net.apply({"params": params}, *cast_inputs(params, x), label)

    def objective(self, params: Any, x: jax.Array, label: jax.Array | None,
                  key: jax.Array) -> jax.Array:
        """What training maximises, ``[B]`` nats: log p(x') of the dequantized x' (uniform;
        ``key`` unused), or the variational bound on log P(x) of the levels x with one
        u ~ q(u | x) drawn from ``key``."""
        if not self.variational:
            return self.log_prob(params, x, label)
        return self.net.apply({"params": params}, *cast_inputs(params, x), key, label)


def _build(m: FlowConfig, image_shape, num_levels) -> FlowNets:
    if isinstance(m, GlowConfig):
        flow = models.Glow(num_levels=m.num_levels, steps_per_level=m.steps_per_level,
                           hidden=m.hidden, num_layers=m.num_layers)
    else:
        flow = models.RealNVP(num_scales=m.num_scales, hidden=m.hidden,
                              num_layers=m.num_layers, actnorm=m.actnorm)
    net = ImageFlow(flow, logit_alpha=m.logit_alpha, num_classes=m.num_classes,
                    class_channels=m.class_channels)
    if m.dequantization == "variational":
        net = dequantization.VariationalDequantizedFlow(
            net, dequantization.Dequantizer(int(num_levels), m.dequantizer_couplings,
                                            m.dequantizer_hidden), int(num_levels))
    return FlowNets(net, tuple(int(s) for s in image_shape), int(num_levels))


def _init(nets: FlowNets, key: jax.Array, batch: dict) -> dict:
    x = batch["image"]
    num_classes = nets.net.flow.num_classes if nets.variational else nets.net.num_classes
    label = batch["label"].astype(jnp.int32) if num_classes else None
    if nets.variational:  # ActNorm fits this batch dequantized by q (uniform at init)
        init_key, noise_key = jax.random.split(key)
        return nets.net.init(init_key, x, noise_key, label)
    return nets.net.init(key, x, label)  # ActNorm fits this batch


def _loss(m: FlowConfig, nets: FlowNets):
    """Mean -log p(x') (uniform: bits/dim adds the dequantization's log L) or mean minus the
    variational bound on log P(x) (which already holds D log L)."""
    return functools.partial(nll_loss, log_prob_fn=nets.objective,
                             conditional=m.num_classes > 0,
                             dequantization_nats_per_dim=0.0 if nets.variational
                             else math.log(nets.num_levels))


def _sampler(m: FlowConfig, nets: FlowNets, *, mean: bool = True,
             sampling: FlowSampleConfig):
    """``sample(params, key, n) -> [n, H, W, C]`` in [0, 1] (variational dequantization: the
    levels floor(L x')), at ``sampling.temperature`` (``mean`` changes nothing: a flow's mean
    image is not cheap)."""
    del mean

    def sample(params, key, n):
        label = sample_labels(n, sampling, m.num_classes) if m.num_classes else None
        return nets.net.apply({"params": params}, key, (n, *nets.event_shape),
                              float(sampling.temperature), label, method="sample")

    return sample


def _likelihoods(m: FlowConfig, nets: FlowNets, eval_cfg: EvalConfig) -> dict[str, Callable]:
    """Uniform: the exact log p(x') (the evaluator adds D log L). Variational: the bound with
    one u per example, and log (1/K) sum_k exp(bound_k) (K = ``eval.importance_samples`` of a
    :class:`FlowEvalConfig`, one at a time), a tighter bound. Class-conditional: the marginal
    over the classes (variational: the same u for every class; q does not see the label, so
    this bounds log of the marginal)."""
    classes = (f", marginal over {m.num_classes} classes (uniform p(y))" if m.num_classes
               else "")

    def one(params, x, key):
        if m.num_classes:
            return marginal_log_prob(lambda p, x_, y: nets.objective(p, x_, y, key), params, x,
                                     m.num_classes)
        return nets.objective(params, x, None, key)

    if not nets.variational:
        return {("exact" + classes) if m.num_classes else "exact (change of variables)": one}
    out = {"variational dequantization bound (1 sample)" + classes: one}
    k = eval_cfg.importance_samples
    if k > 1:
        out[f"importance-weighted variational dequantization bound (K={k})" + classes] = (
            lambda params, x, key: log_mean_exp_chunked(lambda kk: one(params, x, kk), key, k, 1))
    return out


def check_unit_data(config: ExperimentConfig, *, variational_hint: bool = False) -> None:
    """Refuses (one line) data other than the spine's dequantized [0, 1) images, and a
    ``model.logit_alpha`` outside [0, 0.5): what a flow on x' = (x + u) / L needs."""
    m, d = config.model, config.data
    if d.binarize != "none" or not d.dequantize:
        hint = (", or model.dequantization=variational with data.scale=levels"
                if variational_hint else "")
        raise ConfigError(f"model {m.name} is a density over continuous data: set "
                          f"data.dequantize=true (and data.binarize=none){hint}")
    if d.scale != "unit":
        raise ConfigError(f"model {m.name} takes dequantized data in [0, 1): set "
                          f"data.scale=unit (got {d.scale!r})")
    if not m.logit_alpha < 0.5:
        raise ConfigError(f"model.logit_alpha={m.logit_alpha} must be in [0, 0.5)")


def _check(config: ExperimentConfig, image_shape: tuple[int, ...]) -> None:
    m, d = config.model, config.data
    if m.dequantization == "variational":
        if d.binarize != "none" or d.dequantize or d.scale != "levels":
            raise ConfigError(
                f"model.dequantization=variational adds its own noise u ~ q(u | x) to the "
                f"integer levels: set data.scale=levels data.dequantize=false data.binarize=none "
                f"(got data.scale={d.scale}, data.dequantize={str(d.dequantize).lower()}, "
                f"data.binarize={d.binarize})")
        if not m.logit_alpha < 0.5:
            raise ConfigError(f"model.logit_alpha={m.logit_alpha} must be in [0, 0.5)")
    else:
        check_unit_data(config, variational_hint=True)
    h, w = image_shape[:2]
    halvings = m.num_levels if isinstance(m, GlowConfig) else m.num_scales - 1
    if h % 2 ** halvings or w % 2 ** halvings:
        field = "num_levels" if isinstance(m, GlowConfig) else "num_scales"
        raise ConfigError(f"{d.name} images are {h}x{w}: model.{field}="
                          f"{getattr(m, field)} halves them {halvings} times, so H and W must "
                          f"be multiples of {2 ** halvings}")


def _check_sampling(m: FlowConfig, s: FlowSampleConfig) -> None:
    check_class_label(m, s.class_label)


# --- defaults -----------------------------------------------------------------------------

def _experiment(model: FlowConfig):
    return lambda: ExperimentConfig(
        model=model, data=DataConfig(name="mnist5k", scale="unit", dequantize=True),
        optim=OptimConfig(learning_rate=1e-3, schedule="cosine", warmup_steps=200,
                          ema_decay=0.999, grad_clip_norm=1.0),
        train=TrainConfig(steps=3000, batch_size=64, log_every=100, eval_every=1500,
                          sample_every=1500, checkpoint_every=1500),
        eval=FlowEvalConfig(), sample=FlowSampleConfig())


def _recipe(name: str, description: str, model: FlowConfig, tiny: tuple[str, ...]) -> Recipe:
    return Recipe(name=name, description=description, config_cls=type(model),
                  default=_experiment(model), build=_build, check=_check, init=_init,
                  init_batch=0, loss=_loss, sampler=_sampler, check_sampling=_check_sampling,
                  likelihoods=_likelihoods, sample_config=FlowSampleConfig,
                  eval_config=FlowEvalConfig,
                  uses_labels=lambda m: m.num_classes > 0, tiny=tiny)


RECIPES: tuple[Recipe, ...] = (
    _recipe("realnvp", "Real NVP: affine couplings (checkerboard and channel masks), squeeze, "
            "multi-scale factoring out; exact likelihood", RealNVPConfig(),
            ("model.num_scales=1", "model.hidden=8", "model.num_layers=1")),
    _recipe("glow", "Glow: ActNorm, invertible 1x1 convolution (LU), affine coupling; split "
            "with a learned prior; sampling at a temperature", GlowConfig(),
            ("model.num_levels=2", "model.steps_per_level=1", "model.hidden=8",
             "model.num_layers=1")),
)
