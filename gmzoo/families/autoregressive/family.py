"""The autoregressive family on the spine: ``gmzoo train fvsbn | nade | made | pixelcnn |
gated_pixelcnn | pixelrnn | wavenet | transformer``.

Every network keeps the family's contract (:mod:`gmzoo.families.autoregressive`): ``net(x,
label) -> raw [B, *event, P]``, the parameters of each dimension's conditional given the
dimensions before it. So one loss, one likelihood and one naive sampler serve all of them:

- Training minimises the exact negative log-likelihood by teacher forcing, -log p(x) = -sum_d
  log p(x_d | x_<d) in nats per example (:func:`gmzoo.losses.nll.nll_loss`), with the
  conditionals of :mod:`~gmzoo.families.autoregressive.outputs` (``model.likelihood``:
  ``bernoulli`` on binarized images, ``categorical`` over the levels, ``logistic_mix``,
  PixelCNN++'s mixture).
- ``gmzoo evaluate`` reports the exact held-out NLL (``likelihoods``) beside the uniform and
  per-pixel baselines, as for the VAEs. A class-conditional model (``model.num_classes > 0``)
  reports the exact marginal log p(x) = log sum_y p(y) p(x | y), p(y) uniform over the classes.
- Sampling draws one dimension at a time in one ``lax.scan`` at ``sample.temperature``
  (:func:`~gmzoo.families.autoregressive.outputs.draw`): ``sample.sampler=cached`` (the
  default where the network has one: NADE's carried pre-activation, the gated PixelCNN's and
  WaveNet's activation caches, the transformer's key-value cache) or ``naive`` (the whole
  network re-run for every dimension). Both split the key the same way and give the same
  samples.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

from gmzoo.config import (ConfigError, DataConfig, EvalConfig, ExperimentConfig, OptimConfig,
                          SampleConfig, TrainConfig, at_least, choice, non_negative, positive)
from gmzoo.families.autoregressive import (dense, outputs, pixelcnn, pixelcnn_cache, pixelrnn,
                                          transformer, wavenet)
from gmzoo.families.autoregressive.sampling import naive_sample, order_error
from gmzoo.losses.nll import marginal_log_prob, nll_loss
from gmzoo.nn.tree import cast_inputs
from gmzoo.recipes.base import Recipe, check_class_label, sample_labels


@dataclasses.dataclass(frozen=True)
class ARSampleConfig(SampleConfig):
    """One dimension at a time: ``sampler`` ``cached`` (the network's cache, where it has one)
    or ``naive`` (the whole network per dimension; "": the model's default), ``temperature`` T
    (each conditional ~ p^(1/T); 1: the model), ``class_label`` of a class-conditional model
    (-1: classes 0..K-1 in turn)."""

    sampler: str = choice("", "cached", "naive")
    temperature: float = positive(1.0)
    class_label: int = at_least(-1, -1)


# --- the loss and the likelihood ----------------------------------------------------------

def log_prob(raw: jax.Array, x: jax.Array, *, likelihood: str, num_levels: int) -> jax.Array:
    """log p(x) = sum_d log p(x_d | x_<d) of every example: ``raw [B, *event, P]``, ``x [B,
    *event]`` -> ``[B]`` nats, float32."""
    per_dim = outputs.log_prob(likelihood, raw, x, num_levels)  # [B, *event]
    return jnp.sum(per_dim.reshape(per_dim.shape[0], -1), axis=-1)


# --- configs ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ARConfig:
    """What every autoregressive model has: the conditional of each dimension
    (``likelihood``; ``mixture_components`` K of ``logistic_mix``) and optional class
    conditioning (``num_classes`` > 0: the data set's classes)."""

    name: str = ""
    likelihood: str = choice("bernoulli", "categorical", "logistic_mix")
    mixture_components: int = positive(5)
    num_classes: int = non_negative(0)


@dataclasses.dataclass(frozen=True)
class FVSBNConfig(ARConfig):
    """FVSBN: logistic regression of each dimension on the ones before it."""

    name: str = "fvsbn"


@dataclasses.dataclass(frozen=True)
class NADEConfig(ARConfig):
    """NADE with ``hidden`` sigmoid units shared by every conditional."""

    name: str = "nade"
    hidden: int = positive(500)


@dataclasses.dataclass(frozen=True)
class MADEConfig(ARConfig):
    """MADE: a masked ReLU MLP of widths ``hidden``; ``num_masks`` orderings and mask sets
    averaged as probabilities, the others drawn from ``mask_seed``. The first mask's ordering
    is ``ordering`` when given (a permutation of the D dimensions: ``model.ordering=783,782,
    ...`` lists the raster index of the dimension drawn at each step), else the raster order
    when ``natural_ordering``, else drawn too."""

    name: str = "made"
    hidden: tuple[int, ...] = (500,)
    num_masks: int = positive(1)
    natural_ordering: bool = True
    mask_seed: int = non_negative(0)
    ordering: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class PixelCNNConfig(ARConfig):
    """PixelCNN (masked convolutions) or the gated PixelCNN (vertical and horizontal stacks):
    ``features`` channels, ``num_layers`` layers, a ``first_kernel`` type-A convolution, then
    ``kernel``-wide layers."""

    name: str = "pixelcnn"
    features: int = positive(64)
    num_layers: int = positive(7)
    first_kernel: int = positive(7)
    kernel: int = positive(3)


@dataclasses.dataclass(frozen=True)
class PixelRNNConfig(ARConfig):
    """PixelRNN: a type-A ``first_kernel`` convolution of ``features`` channels, then
    ``num_layers`` LSTM layers of ``hidden`` units, ``layer`` the Row LSTM (``kernel``-wide
    input-to-state convolutions along the row; a triangular receptive field) or the Diagonal
    BiLSTM (skewed input; every earlier pixel in view)."""

    name: str = "pixelrnn"
    features: int = positive(32)
    hidden: int = positive(32)
    num_layers: int = positive(2)
    first_kernel: int = positive(7)
    kernel: int = positive(3)
    layer: str = choice(*pixelrnn.LAYERS)


@dataclasses.dataclass(frozen=True)
class WaveNetConfig(ARConfig):
    """WaveNet over the raster sequence: ``dilations`` repeated ``num_stacks`` times, causal
    convolutions of width ``kernel_size`` (the first ``input_kernel_size``), gated units of
    ``gate_channels``, residual and skip widths; inputs one-hot (``embedding_dim`` 0) or
    embedded."""

    name: str = "wavenet"
    residual_channels: int = positive(32)
    gate_channels: int = positive(32)
    skip_channels: int = positive(64)
    kernel_size: int = positive(2)
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    num_stacks: int = positive(1)
    input_kernel_size: int = positive(1)
    embedding_dim: int = non_negative(0)


@dataclasses.dataclass(frozen=True)
class TransformerConfig(ARConfig):
    """A decoder-only transformer over the raster tokens: ``num_layers`` pre-LayerNorm blocks
    of ``num_heads``-head causal self-attention (width ``d_model``) and an MLP ``mlp_ratio``
    times as wide; a class label is the first token."""

    name: str = "transformer"
    d_model: int = positive(64)
    num_heads: int = positive(4)
    num_layers: int = positive(4)
    mlp_ratio: int = positive(4)


# --- networks -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ARNets:
    """What ``build`` makes: the network (a Linen module keeping the family's contract), the
    conditional of each dimension, the shape of one example, and the network's cached sampler
    (``cached(module, params, key, x_init, *, draw, temperature, label) -> x``, and ``cond=``
    for the networks that take one; None: the naive sampler only).

    ``cond``: a spatial map ``[B, H, W, E]`` at x's H, W, for the networks built with
    ``cond_channels`` E > 0 (:class:`~gmzoo.families.autoregressive.pixelcnn.GatedPixelCNN`,
    :class:`~gmzoo.families.autoregressive.transformer.ARTransformer`); None for every
    other network (it is then not passed at all, so they keep ``net(x, label)``)."""

    net: Any
    likelihood: str
    num_levels: int
    event_shape: tuple[int, ...]
    num_classes: int
    cached: Callable | None

    def _cond_kw(self, cond: jax.Array | None) -> dict:
        """``{"cond": cond}``, or {} for cond None; a cond the network cannot take is refused
        (ValueError)."""
        if cond is None:
            return {}
        if not isinstance(self.net, (pixelcnn.GatedPixelCNN, transformer.ARTransformer)):
            raise ValueError(f"{type(self.net).__name__} takes no spatial cond; only the gated "
                             "PixelCNN and the transformer do (built with cond_channels > 0)")
        return {"cond": cond}

    def apply_fn(self, params: Any, x: jax.Array, label: jax.Array | None = None,
                 cond: jax.Array | None = None, **kw):
        """``raw [B, *event, P]`` at ``params`` (x and cond cast to the parameters' dtype)."""
        self._cond_kw(cond)  # refuses a cond the network cannot take, before any work
        x, cond = cast_inputs(params, x, cond)
        return self.net.apply({"params": params}, x, label, **self._cond_kw(cond), **kw)

    def log_prob(self, params: Any, x: jax.Array, label: jax.Array | None = None,
                 cond: jax.Array | None = None) -> jax.Array:
        """Exact log p(x [| label, cond]) ``[B]`` in nats (a MADE ensemble: its mixture)."""
        if isinstance(self.net, dense.MADE) and self.net.num_masks > 1:
            self._cond_kw(cond)  # refuses a cond
            return dense.made_log_prob(self.net, params, x, self._log_prob_fn, label)
        return log_prob(self.apply_fn(params, x, label, cond), x, likelihood=self.likelihood,
                        num_levels=self.num_levels)

    def training_log_prob(self, params: Any, x: jax.Array, label: jax.Array | None,
                          key: jax.Array, cond: jax.Array | None = None) -> jax.Array:
        """log p(x) of the objective ``[B]``: :meth:`log_prob`, except for a MADE ensemble,
        which trains one mask drawn uniformly per step (order-agnostic training, Germain et al.
        2015, sec. 4.2)."""
        if isinstance(self.net, dense.MADE) and self.net.num_masks > 1:
            k = jax.random.randint(key, (), 0, self.net.num_masks)
            return log_prob(self.apply_fn(params, x, label, cond, mask_index=k), x,
                            likelihood=self.likelihood, num_levels=self.num_levels)
        return self.log_prob(params, x, label, cond)

    def sample(self, params: Any, key: jax.Array, x_init: jax.Array, *,
               temperature: float = 1.0, label: jax.Array | None = None,
               cond: jax.Array | None = None, cached: bool = True) -> jax.Array:
        """x ~ prod_d p_T(x_d | x_<d [, label, cond]) ``[B, *event]`` (the shape of ``x_init``),
        one dimension at a time: the network's cached sampler when ``cached`` and it has one,
        else :func:`~gmzoo.families.autoregressive.sampling.naive_sample` (both split ``key``
        alike and give the same samples). A MADE ensemble samples from its first mask here."""
        kw = self._cond_kw(cond)
        if cached and self.cached is not None:
            return self.cached(self.net, params, key, x_init, draw=self.draw,
                               temperature=temperature, label=label, **kw)
        return naive_sample(lambda x: self.apply_fn(params, x, label, cond), key, x_init,
                            draw=self.draw, temperature=temperature)

    def _log_prob_fn(self, raw: jax.Array, x: jax.Array) -> jax.Array:
        return outputs.log_prob(self.likelihood, raw, x, self.num_levels)

    def draw(self, key: jax.Array, raw: jax.Array, temperature: float) -> jax.Array:
        """One value per dimension from its conditional at ``temperature``."""
        return outputs.draw(self.likelihood, key, raw, temperature, self.num_levels)


def _num_params(m: ARConfig, num_levels: int) -> int:
    return outputs.num_params(m.likelihood, num_levels, m.mixture_components)


def _network(m: ARConfig, event_shape: tuple[int, ...], num_levels: int) -> tuple[Any, Any]:
    """The Linen network of ``m`` and its cached sampler (or None)."""
    common = dict(num_params=_num_params(m, num_levels), num_levels=num_levels,
                  num_classes=m.num_classes)
    dims = math.prod(event_shape)
    if isinstance(m, NADEConfig):
        return dense.NADE(hidden=m.hidden, **common), dense.nade_sample
    if isinstance(m, MADEConfig):
        return dense.MADE(num_dims=dims, hidden=tuple(m.hidden), num_masks=m.num_masks,
                          natural_ordering=m.natural_ordering, mask_seed=m.mask_seed,
                          ordering=tuple(m.ordering) or None, **common), None
    if isinstance(m, PixelCNNConfig):
        conv = dict(features=m.features, num_layers=m.num_layers, first_kernel=m.first_kernel,
                    kernel=m.kernel, num_channels=event_shape[-1], **common)
        if m.name == "gated_pixelcnn":
            return pixelcnn.GatedPixelCNN(**conv), pixelcnn_cache.gated_pixelcnn_sample
        return pixelcnn.PixelCNN(**conv), pixelcnn_cache.pixelcnn_sample
    if isinstance(m, PixelRNNConfig):
        return pixelrnn.PixelRNN(features=m.features, hidden=m.hidden, num_layers=m.num_layers,
                                 kernel_size=m.kernel, first_kernel=m.first_kernel,
                                 layer=m.layer, **common), None
    if isinstance(m, WaveNetConfig):
        return wavenet.WaveNet(residual_channels=m.residual_channels,
                               gate_channels=m.gate_channels, skip_channels=m.skip_channels,
                               kernel_size=m.kernel_size, dilations=tuple(m.dilations),
                               num_stacks=m.num_stacks, input_kernel_size=m.input_kernel_size,
                               embedding_dim=m.embedding_dim, **common), wavenet.wavenet_sample
    if isinstance(m, TransformerConfig):
        return transformer.ARTransformer(max_len=dims, d_model=m.d_model, num_heads=m.num_heads,
                                         num_layers=m.num_layers, mlp_ratio=m.mlp_ratio,
                                         **common), transformer.transformer_sample
    return dense.FVSBN(**common), None


def _build(m: ARConfig, image_shape, num_levels) -> ARNets:
    event = tuple(int(s) for s in image_shape)
    net, cached = _network(m, event, int(num_levels))
    return ARNets(net, m.likelihood, int(num_levels), event, m.num_classes, cached)


def _init(nets: ARNets, key: jax.Array, batch: dict) -> dict:
    x = batch["image"]
    label = jnp.zeros((x.shape[0],), jnp.int32) if nets.num_classes else None
    return nets.net.init(key, x, label)


def _loss(m: ARConfig, nets: ARNets):
    return functools.partial(nll_loss, log_prob_fn=nets.training_log_prob,
                             conditional=m.num_classes > 0)


def _has_cache(m: ARConfig) -> bool:
    return isinstance(m, (NADEConfig, PixelCNNConfig, WaveNetConfig, TransformerConfig))


def _sampler(m: ARConfig, nets: ARNets, *, mean: bool = True, sampling: ARSampleConfig):
    """``sample(params, key, n) -> [n, *event]`` in the data space (0/1 or levels), one
    dimension at a time at ``sampling.temperature`` (``mean`` changes nothing: the family has
    no cheap mean to show). A MADE ensemble draws sample i from mask i mod K (the uniform
    mixture of its K models, stratified)."""
    del mean
    cached = (sampling.sampler or ("cached" if _has_cache(m) else "naive")) == "cached"
    temperature = float(sampling.temperature)

    def sample(params, key, n):
        label = sample_labels(n, sampling, m.num_classes) if m.num_classes else None
        x0 = jnp.zeros((n, *nets.event_shape), jnp.float32)
        if cached:
            return nets.cached(nets.net, params, key, x0, draw=nets.draw,
                               temperature=temperature, label=label)
        if isinstance(nets.net, dense.MADE):
            parts = []
            for k in range(min(nets.net.num_masks, n)):
                rows = jnp.arange(k, n, nets.net.num_masks)
                parts.append(dense.made_sample(
                    nets.net, params, jax.random.fold_in(key, k), x0[rows], draw=nets.draw,
                    temperature=temperature, label=None if label is None else label[rows],
                    mask_index=k))
            order = jnp.argsort(jnp.concatenate([jnp.arange(k, n, nets.net.num_masks)
                                                 for k in range(len(parts))]))
            return jnp.concatenate(parts)[order]
        return naive_sample(lambda x: nets.apply_fn(params, x, label), key, x0,
                                     draw=nets.draw, temperature=temperature)

    return sample


def _likelihoods(m: ARConfig, nets: ARNets, eval_cfg: EvalConfig) -> dict[str, Callable]:
    """The exact held-out log p(x) (a class-conditional model: the marginal over its classes,
    p(y) uniform)."""
    del eval_cfg
    if m.num_classes:
        return {f"exact, marginal over {m.num_classes} classes (uniform p(y))":
                lambda params, x, key: marginal_log_prob(nets.log_prob, params, x, m.num_classes)}
    return {"exact": lambda params, x, key: nets.log_prob(params, x)}


# --- checks -------------------------------------------------------------------------------

def _levels_of(d: DataConfig) -> int | None:
    """The levels the data space gives (2 when binarized), or None when it is not discrete."""
    if d.binarize in ("fixed", "dynamic"):
        return 2
    if d.scale == "levels" and not d.dequantize:
        return 0  # the data set's own levels (17 for digits, 256 for mnist5k)
    return None


def _check(config: ExperimentConfig, image_shape: tuple[int, ...]) -> None:
    m, d = config.model, config.data
    levels = _levels_of(d)
    if levels is None:
        raise ConfigError(f"model {m.name} models discrete data: set data.binarize=dynamic (or "
                          "fixed) for binary pixels, or data.scale=levels with "
                          "data.dequantize=false for integer levels")
    if m.likelihood == "bernoulli" and levels != 2:
        raise ConfigError(f"model.likelihood=bernoulli takes binary data, and data.binarize="
                          f"{d.binarize!r} gives {d.name}'s grey levels: set data.binarize="
                          "dynamic, or model.likelihood=categorical")
    error = _network_error(m, tuple(image_shape))
    if error:
        raise ConfigError(f"{d.name} examples {tuple(image_shape)} do not fit model {m.name}: "
                          f"{error}")


def _network_error(m: ARConfig, event: tuple[int, ...]) -> str | None:
    dims = math.prod(event)
    if isinstance(m, (PixelCNNConfig, PixelRNNConfig)):
        if m.first_kernel % 2 == 0 or m.kernel % 2 == 0:
            return (f"first_kernel={m.first_kernel} and kernel={m.kernel} must be odd (a masked "
                    "convolution is centred on its pixel)")
    if isinstance(m, PixelCNNConfig) and m.features < event[-1]:
        return (f"model.features={m.features} must be at least the {event[-1]} channels (one "
                "group each)")
    if isinstance(m, PixelRNNConfig) and min(m.features, m.hidden) < event[-1]:
        return (f"model.features={m.features} and model.hidden={m.hidden} must be at least "
                f"the {event[-1]} channels (one group each)")
    if isinstance(m, MADEConfig):
        if dims < 2:
            return f"MADE needs at least 2 dimensions, got {dims}"
        if not m.hidden or any(h < 1 for h in m.hidden):
            return f"model.hidden={tuple(m.hidden)} must be one or more positive widths"
        if m.ordering and (why := order_error(m.ordering, dims)):
            return f"model.ordering: {why}"
    if isinstance(m, WaveNetConfig):
        if not m.dilations or any(v < 1 for v in m.dilations):
            return f"model.dilations={tuple(m.dilations)} must be one or more positive integers"
    if isinstance(m, TransformerConfig) and m.d_model % m.num_heads:
        return f"model.d_model={m.d_model} does not split into num_heads={m.num_heads} heads"
    return None


def _check_sampling(m: ARConfig, s: ARSampleConfig) -> None:
    check_class_label(m, s.class_label)


# --- defaults -----------------------------------------------------------------------------

_OPTIM = OptimConfig(learning_rate=1e-3, schedule="cosine", warmup_steps=100, ema_decay=0.999,
                     grad_clip_norm=1.0)
_BINARY_MNIST = DataConfig(name="mnist5k", binarize="dynamic")
_TONES = DataConfig(name="tones", scale="levels")


def _experiment(model: ARConfig, data: DataConfig, steps: int, learning_rate: float):
    every = max(steps // 2, 1)
    return lambda: ExperimentConfig(
        model=model, data=data, optim=dataclasses.replace(_OPTIM, learning_rate=learning_rate),
        train=TrainConfig(steps=steps, batch_size=100, log_every=100, eval_every=every,
                          sample_every=every, checkpoint_every=every),
        eval=EvalConfig(), sample=ARSampleConfig())


def _recipe(name: str, description: str, model: ARConfig, tiny: tuple[str, ...], *,
            data: DataConfig = _BINARY_MNIST, steps: int = 3000,
            learning_rate: float = 1e-3) -> Recipe:
    return Recipe(name=name, description=description, config_cls=type(model),
                  default=_experiment(model, data, steps, learning_rate), build=_build,
                  check=_check,
                  init=_init, loss=_loss, sampler=_sampler,
                  samplers=("cached", "naive") if _has_cache(model) else ("naive",),
                  check_sampling=_check_sampling, likelihoods=_likelihoods,
                  sample_config=ARSampleConfig,
                  uses_labels=lambda m: m.num_classes > 0, tiny=tiny)


RECIPES: tuple[Recipe, ...] = (
    _recipe("fvsbn", "FVSBN: logistic regression of each pixel on the pixels before it, exact "
            "likelihood", FVSBNConfig(),
            ("model.num_classes=10",),  # small as it is; tiny runs the conditional path
            learning_rate=1e-2),  # 1e-3 underfits mnist5k in 3,000 steps: 140 nats, 1e-2: 101
    _recipe("nade", "NADE: shared sigmoid hidden layer, pre-activations carried from pixel to "
            "pixel (cached sampler)", NADEConfig(), ("model.hidden=8",)),
    _recipe("made", "MADE: masked MLP, orderings and mask ensembles averaged as probabilities",
            MADEConfig(), ("model.hidden=16", "model.num_masks=2", "model.natural_ordering=false"),
            learning_rate=1e-2),  # mnist5k: 121 nats at 1e-3, 108 at 3e-3, 107 at 1e-2
    _recipe("pixelcnn", "PixelCNN: masked convolutions of type A and B (has a blind spot)",
            PixelCNNConfig(), ("model.features=8", "model.num_layers=2", "model.first_kernel=3"),
            steps=2000),
    _recipe("gated_pixelcnn", "gated PixelCNN: vertical and horizontal stacks, no blind spot, "
            "cached sampler", PixelCNNConfig(name="gated_pixelcnn", num_layers=8),
            ("model.features=8", "model.num_layers=2", "model.first_kernel=3"), steps=2000),
    _recipe("pixelrnn", "PixelRNN: Row LSTM (over rows) or Diagonal BiLSTM (model.layer="
            "diagonal, over the skewed image's columns)",
            PixelRNNConfig(), ("model.features=8", "model.hidden=8", "model.num_layers=1",
                               "model.first_kernel=3"), steps=2000),
    _recipe("wavenet", "WaveNet: dilated causal convolutions, gated residual and skip "
            "connections (mu-law tones; fast-wavenet cached sampler)",
            WaveNetConfig(likelihood="categorical"),
            ("model.residual_channels=8", "model.gate_channels=8", "model.skip_channels=8",
             "model.dilations=1,2"), data=_TONES, steps=2000),
    _recipe("transformer", "autoregressive transformer over pixel tokens, causal self-attention, "
            "key-value cache", TransformerConfig(),
            ("model.d_model=16", "model.num_heads=2", "model.num_layers=1"), steps=2000),
)
