"""The second stage of the VQ-VAE family: ``gmzoo train vqvae_prior --set
model.autoencoder=WORKDIR``, an autoregressive prior over the code maps of a trained ``vqvae``
or ``vqvae2`` run (:mod:`gmzoo.families.vqvae.family` explains the two stages and the bound).

The prior is the autoregressive family's network (``model.prior``: ``gated_pixelcnn`` or
``transformer``, :mod:`gmzoo.families.autoregressive`) over a code map as a ``[h, w, 1]``
image with K levels and categorical conditionals; the gated PixelCNN reads each code through a
learned embedding (``model.embedding`` channels; the transformer embeds its tokens anyway).
For VQ-VAE-2 there are two such networks, trained together on the sum of their NLLs:

    log p(k_top, k_bottom) = log p(k_top) + log p(k_bottom | k_top)

the bottom one conditioned on the top codes through ``cond``: a learned embedding of each top
code (``model.cond_channels``), repeated up to the bottom map's size, which enters every layer
(the gated PixelCNN's location-dependent conditioning; the transformer's token inputs).

The VQ-VAE's EMA weights and codebook are copied into ``params["frozen"]`` (they get no
gradient, so the optimizer never moves them) and the checkpoint stands alone. Each training
step encodes its batch to code maps with them (the posterior is a point mass, so a code map is
the data of the prior).

- Loss: -log p(k(x)) in nats per example (``nll_codes``; ``bits_per_code`` beside it).
- ``gmzoo evaluate``: the two-stage bound log p(x) >= log p(x | z_q(k(x))) + log p(k(x)), in
  nats and bits/dim, beside the stage-1 ELBO with the uniform prior it replaces.
- Sampling: code maps drawn one code at a time (``sample.sampler=cached``, the network's cache;
  ``naive``, the network re-run per code; same samples), top then bottom, at
  ``sample.temperature``, decoded by the frozen decoder; all one compiled call.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gmzoo.config import (ConfigError, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig,
                          choice, positive)
from gmzoo.families.autoregressive import pixelcnn, pixelcnn_cache, transformer
from gmzoo.families.autoregressive.family import ARNets, ARSampleConfig
from gmzoo.families.vqvae import family as stage1
from gmzoo.recipes.base import Recipe, check_first_stage_data

FIRST_STAGES = ("vqvae", "vqvae2")
PRIORS = ("gated_pixelcnn", "transformer")


@dataclasses.dataclass(frozen=True)
class VQPriorConfig:
    """``autoencoder``: the workdir of a trained ``vqvae`` / ``vqvae2`` run; ``prior``: the
    network (``gated_pixelcnn``: ``num_layers`` gated layers of ``features`` channels, a
    ``first_kernel`` x ``first_kernel`` first convolution, then ``kernel``; ``transformer``:
    ``num_layers`` blocks of width ``d_model`` with ``num_heads`` heads); ``embedding``: the
    channels of the gated PixelCNN's code embedding; ``cond_channels``: the channels of the
    top-code embedding that conditions VQ-VAE-2's bottom prior."""

    name: str = "vqvae_prior"
    autoencoder: str = ""
    prior: str = choice(*PRIORS)
    features: int = positive(64)
    num_layers: int = positive(8)
    first_kernel: int = positive(5)
    kernel: int = positive(3)
    d_model: int = positive(64)
    num_heads: int = positive(4)
    mlp_ratio: int = positive(4)
    embedding: int = positive(32)
    cond_channels: int = positive(32)


@dataclasses.dataclass(frozen=True)
class PriorNets:
    """The frozen first stage (its module and config) and one :class:`ARNets` per code map
    (top first), the bottom one conditioned on the top codes for VQ-VAE-2."""

    vq: Any  # the first stage's VQNets
    levels: tuple[ARNets, ...]
    stage: Any = None  # gmzoo.train.loop.Stage of the first stage

    @property
    def two_level(self) -> bool:
        return len(self.levels) == 2

    @property
    def num_codes(self) -> int:
        return self.vq.config.num_codes


def _network(m: VQPriorConfig, shape: tuple[int, int], num_codes: int, cond_channels: int):
    common = dict(num_levels=num_codes, num_params=num_codes, num_classes=0,
                  cond_channels=cond_channels)
    if m.prior == "transformer":
        net = transformer.ARTransformer(max_len=shape[0] * shape[1], d_model=m.d_model,
                                        num_heads=m.num_heads, num_layers=m.num_layers,
                                        mlp_ratio=m.mlp_ratio, **common)
        return ARNets(net, "categorical", num_codes, (*shape, 1), 0, transformer.transformer_sample)
    net = pixelcnn.GatedPixelCNN(features=m.features, num_layers=m.num_layers,
                                 first_kernel=m.first_kernel, kernel=m.kernel, num_channels=1,
                                 input_embedding=m.embedding, **common)
    return ARNets(net, "categorical", num_codes, (*shape, 1), 0, pixelcnn_cache.gated_pixelcnn_sample)


def _build(m: VQPriorConfig, image_shape, num_levels, *, stage) -> PriorNets:
    del image_shape, num_levels
    vq = stage.run.module
    shapes = vq.code_shapes
    levels = [_network(m, shapes[0], vq.config.num_codes, 0)]
    if len(shapes) == 2:
        levels.append(_network(m, shapes[1], vq.config.num_codes, m.cond_channels))
    return PriorNets(vq, tuple(levels), stage)


def _check(config: ExperimentConfig, image_shape, *, stage) -> None:
    m, first = config.model, stage.config
    if first.model.name not in FIRST_STAGES:
        raise ConfigError(f"model.autoencoder: {m.autoencoder} holds a {first.model.name} run; "
                          f"vqvae_prior takes a {' or '.join(FIRST_STAGES)} run")
    check_first_stage_data(config, first, "the VQ-VAE's")
    if m.prior == "gated_pixelcnn" and (m.first_kernel % 2 == 0 or m.kernel % 2 == 0):
        raise ConfigError(f"model.first_kernel={m.first_kernel} and model.kernel={m.kernel} must "
                          "be odd (a masked convolution is centred on its code)")
    if m.prior == "transformer" and m.d_model % m.num_heads:
        raise ConfigError(f"model.d_model={m.d_model} does not split into "
                          f"num_heads={m.num_heads} heads")


def _top_cond(nets: PriorNets, params: Any, top: jax.Array) -> jax.Array:
    """The bottom prior's ``cond [B, hb, wb, E]``: each top code's embedding, repeated up."""
    (ht, wt), (hb, wb) = nets.vq.code_shapes
    e = jnp.take(params["top_embed"], top, axis=0)  # [B, ht, wt, E]
    return jnp.repeat(jnp.repeat(e, hb // ht, axis=1), wb // wt, axis=2)


def _init(nets: PriorNets, key: jax.Array, batch: dict) -> dict:
    """The prior networks initialised (each init compiled); the first stage's EMA weights (and
    EMA codebook) copied into ``params["frozen"]`` as they are (``init_traced=False``: not
    baked into a compiled program as constants)."""
    keys = jax.random.split(key, 3)
    n = batch["image"].shape[0]
    params: dict[str, Any] = {"frozen": jax.device_get(nets.stage.params)}
    first = nets.levels[0]
    params["top"] = jax.jit(first.net.init)(keys[0], jnp.zeros((n, *first.event_shape)))["params"]
    if nets.two_level:
        bottom = nets.levels[1]
        e = bottom.net.cond_channels
        params["top_embed"] = 0.1 * jax.random.normal(keys[1], (nets.num_codes, e))
        cond = jnp.zeros((n, *bottom.event_shape[:2], e))
        params["bottom"] = jax.jit(bottom.net.init)(keys[2], jnp.zeros((n, *bottom.event_shape)),
                                                    None, cond=cond)["params"]
    return {"params": params}


def encode_codes(nets: PriorNets, frozen: Any, x: jax.Array) -> tuple[jax.Array, ...]:
    """The code maps of ``x`` (top first), ``[B, h, w]`` int32 each, by the frozen encoder."""
    codes = nets.vq.net.apply(stage1._variables(jax.lax.stop_gradient(frozen)), x,
                              method="encode")
    return codes if isinstance(codes, tuple) else (codes,)


def codes_log_prob(nets: PriorNets, params: Any, codes: tuple[jax.Array, ...]) -> jax.Array:
    """log p(k) ``[B]`` in nats: the top map's (or only map's), plus the bottom map's given the
    top codes for VQ-VAE-2."""
    as_image = lambda k: k[..., None].astype(jnp.float32)  # [B, h, w, 1]
    log_p = nets.levels[0].log_prob(params["top"], as_image(codes[0]))
    if nets.two_level:
        cond = _top_cond(nets, params, codes[0])
        log_p = log_p + nets.levels[1].log_prob(params["bottom"], as_image(codes[1]), cond=cond)
    return log_p


def _loss(m: VQPriorConfig, nets: PriorNets):
    num_codes = sum(h * w for h, w in nets.vq.code_shapes)

    def loss_fn(params, batch, key):
        del key
        codes = encode_codes(nets, params["frozen"], batch["image"])
        nll = -jnp.mean(codes_log_prob(nets, params, codes))
        return nll, {"nll_codes": nll, "bits_per_code": nll / (num_codes * jnp.log(2.0))}

    return loss_fn


def _likelihoods(m: VQPriorConfig, nets: PriorNets, eval_cfg: EvalConfig):
    """The two-stage bound log p(x | z_q(k(x))) + log p(k(x)), and the stage-1 ELBO (uniform
    prior) beside it."""
    del eval_cfg
    vq_cfg = nets.vq.config
    uniform = stage1._likelihoods(vq_cfg, nets.vq, EvalConfig())

    def two_stage(params, x, key):
        codes = encode_codes(nets, params["frozen"], x)
        recon = stage1._recon_log_prob(vq_cfg, nets.vq, params["frozen"], x)
        return recon + codes_log_prob(nets, params, codes)

    first = {f"stage 1, {k}": (lambda f: lambda params, x, key: f(params["frozen"], x, key))(f)
             for k, f in uniform.items()}
    return {"two-stage bound: log p(x|z_q) + log p_prior(codes)": two_stage, **first}


def _sampler(m: VQPriorConfig, nets: PriorNets, *, mean: bool = True,
             sampling: ARSampleConfig = ARSampleConfig()):
    """``sample(params, key, n)``: code maps from the prior (top, then bottom given the top),
    decoded by the frozen decoder (its mean when ``mean``, else a draw)."""
    cached = (sampling.sampler or "cached") == "cached"
    temperature = float(sampling.temperature)

    def sample(params, key, n):
        keys = jax.random.split(key, 3)
        first = nets.levels[0]
        top = first.sample(params["top"], keys[0], jnp.zeros((n, *first.event_shape)),
                           temperature=temperature, cached=cached)[..., 0].astype(jnp.int32)
        codes = (top,)
        if nets.two_level:
            bottom = nets.levels[1]
            x0 = jnp.zeros((n, *bottom.event_shape))
            b = bottom.sample(params["bottom"], keys[1], x0, temperature=temperature,
                              cond=_top_cond(nets, params, top), cached=cached)
            codes = (top, b[..., 0].astype(jnp.int32))
        return stage1.decode_codes(nets.vq.config, nets.vq.net, params["frozen"], codes,
                                   mean=mean, key=keys[2])

    return sample


def _check_sampling(m: VQPriorConfig, s: ARSampleConfig) -> None:
    if s.class_label >= 0:
        raise ConfigError(f"sample.class_label={s.class_label}: the prior over codes is "
                          "unconditional")


RECIPES: tuple[Recipe, ...] = (
    Recipe(name="vqvae_prior", description="autoregressive prior (gated PixelCNN or transformer) "
           "over the codes of a trained vqvae / vqvae2 run (--set model.autoencoder=WORKDIR)",
           config_cls=VQPriorConfig,
           default=lambda: ExperimentConfig(
               model=VQPriorConfig(), data=stage1._BINARY_MNIST,
               optim=OptimConfig(learning_rate=1e-3, schedule="cosine", warmup_steps=100,
                                 ema_decay=0.999, grad_clip_norm=1.0),
               train=TrainConfig(steps=2000, batch_size=100, log_every=100, eval_every=1000,
                                 sample_every=1000, checkpoint_every=1000),
               eval=EvalConfig(), sample=ARSampleConfig()),
           build=_build, check=_check, init=_init, init_traced=False, loss=_loss,
           sampler=_sampler,
           samplers=("cached", "naive"), check_sampling=_check_sampling,
           likelihoods=_likelihoods, sample_config=ARSampleConfig, first_stage="autoencoder",
           tiny=("model.features=8", "model.num_layers=1", "model.first_kernel=3",
                 "model.embedding=4", "model.cond_channels=4", "model.d_model=8",
                 "model.num_heads=2")),
)
