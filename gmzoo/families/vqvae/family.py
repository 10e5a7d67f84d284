"""The VQ-VAE family on the spine: ``gmzoo train vqvae | vqvae2 | vqvae_prior``.

Two stages, as in van den Oord et al. 2017 (sec. 3.2-3.3) and Razavi et al. 2019 (VQ-VAE-2):

1. ``vqvae`` / ``vqvae2`` train the autoencoder (:mod:`gmzoo.families.vqvae.model`) with the
   loss of eq. 3, -log p(x | z_q) + ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2 (nats per
   example), the codebook learned by EMA (``model.update=ema``, the default; its codebook is
   the ``"vq_state"`` model state, which sampling and evaluation read through
   ``Recipe.inference_state``) or by the loss (``update=loss``). With an EMA codebook,
   ``model.restart_threshold`` > 0 restarts dead codes.
2. ``vqvae_prior --set model.autoencoder=WORKDIR`` fits an autoregressive prior over the code
   maps of a trained ``vqvae`` or ``vqvae2`` run (its weights and codebook are copied into
   ``params["frozen"]``, never trained): the autoregressive family's gated PixelCNN or
   transformer (``model.prior``) over the codes as a ``[h, w, 1]`` image of K levels with
   categorical conditionals and a learned embedding of each code as the input. A VQ-VAE-2 gets
   two priors trained together: the top one over the top codes, the bottom one over the bottom
   codes conditioned on the top codes (their learned embedding, repeated up to the bottom
   map's size, enters every layer as a spatial conditioning map).

Likelihood (``gmzoo evaluate``). The encoder's posterior is one code map k(x) with probability
1 (q(k | x) is a point mass), so the ELBO is

    log p(x) >= log p(x | z_q(k(x))) - KL(q || p(k)) = log p(x | z_q(k(x))) + log p(k(x))

(the entropy of a point mass is 0). For stage 1 the prior is uniform, log p(k) = -L log K for
L codes (the paper's "KL term is constant"); for the two-stage model it is the trained prior's
exact log-likelihood of the code map (sum of both levels' for VQ-VAE-2). Bits/dim come from
the same figure, as for the VAEs.

Sampling: stage 1 decodes code maps drawn uniformly (what its ELBO's prior is: noise, which is
the point of stage 2); the prior draws a code map one code at a time (``sample.sampler=cached``
or ``naive``, ``sample.temperature``) and decodes it, in one compiled call.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gmzoo.config import (ConfigError, DataConfig, EvalConfig, ExperimentConfig, OptimConfig,
                          SampleConfig, TrainConfig, choice, non_negative, positive)
from gmzoo.data import registry
from gmzoo.families.vqvae import model as vq_model
from gmzoo.families.vqvae.quantizer import VQ_STATE
from gmzoo.losses.likelihoods import resolve_likelihood
from gmzoo.nn.tree import cast_inputs
from gmzoo.recipes.base import Recipe
from gmzoo.samplers.vae import sample_likelihood

LIKELIHOODS = vq_model.VQVAE_LIKELIHOODS
_LIKELIHOOD_DATA = {"bernoulli": "data.binarize=fixed or dynamic",
                    "gaussian": "data.binarize=none data.scale=unit data.dequantize=true"}


# --- stage 1: the VQ-VAE ------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class VQVAEConfig:
    """The conv VQ-VAE: ``num_codes`` K codes of ``code_dim`` D, an encoder of ``hidden``
    channels that halves the image log2(``downsample``) times, the commitment weight ``beta``,
    the codebook's ``update`` (``ema``: exponential moving averages with ``decay`` and Laplace
    smoothing ``eps``; ``loss``: the codebook term of the loss), ``restart_threshold`` (EMA
    only: codes whose EMA count falls below it are restarted at encoder outputs of the batch;
    0: never; set it to 0 with ``update=loss``), and the decoder's ``likelihood`` (``bernoulli`` logits on binarized images,
    ``gaussian`` means of scale exp(``log_scale``) on dequantized [0, 1) images)."""

    name: str = "vqvae"
    num_codes: int = positive(512)
    code_dim: int = positive(64)
    downsample: int = positive(4)
    hidden: int = positive(64)
    beta: float = non_negative(0.25)
    update: str = choice("ema", "loss")
    decay: float = 0.99
    eps: float = 1e-5
    restart_threshold: float = non_negative(1.0)  # Jukebox's; without, mnist5k used 5% of 512
    likelihood: str = choice(*LIKELIHOODS)
    log_scale: float = 0.0


@dataclasses.dataclass(frozen=True)
class VQVAE2Config(VQVAEConfig):
    """VQ-VAE-2: a bottom code map at H / ``bottom_downsample`` and a top one a further
    ``top_downsample`` down (28x28 -> 14x14 and 7x7), each with its own codebook of
    ``num_codes`` codes."""

    name: str = "vqvae2"
    downsample: int = positive(2)  # unused by the two-level model: see bottom_downsample
    bottom_downsample: int = positive(2)
    top_downsample: int = positive(2)


def _is_two_level(m: Any) -> bool:
    return isinstance(m, VQVAE2Config)


@dataclasses.dataclass(frozen=True)
class VQNets:
    """What ``build`` makes for stage 1: the Linen autoencoder and its config."""

    net: nn.Module
    config: VQVAEConfig
    num_levels: int

    @property
    def code_shapes(self) -> tuple[tuple[int, int], ...]:
        """The (h, w) of every code map, top first for VQ-VAE-2."""
        return code_shapes(self.net)


def code_shapes(net: nn.Module) -> tuple[tuple[int, int], ...]:
    """The (h, w) of every code map of a VQ-VAE (one) or VQ-VAE-2 (top, bottom)."""
    if hasattr(net, "latent_shapes"):
        return tuple(tuple(s) for s in net.latent_shapes)
    return (tuple(net.latent_shape),)


def _build(m: VQVAEConfig, image_shape, num_levels) -> VQNets:
    common = dict(image_shape=tuple(int(s) for s in image_shape), num_codes=m.num_codes,
                  code_dim=m.code_dim, hidden=m.hidden, beta=m.beta, update=m.update,
                  decay=m.decay, eps=m.eps, restart_threshold=m.restart_threshold)
    if _is_two_level(m):
        net = vq_model.VQVAE2(bottom_downsample=m.bottom_downsample,
                              top_downsample=m.top_downsample, **common)
    else:
        net = vq_model.VQVAE(downsample=m.downsample, **common)
    return VQNets(net, m, int(num_levels))


def _init(nets: VQNets, key: jax.Array, batch: dict) -> dict:
    """``{"params": ...}`` (and ``"vq_state"``: the EMA codebook, the train state's model
    state)."""
    return dict(nets.net.init(key, batch["image"], False))


def _variables(params: Any) -> dict:
    """Linen variables from the spine's ``params``: the parameters, and the EMA codebook when
    ``params`` carries it (``Recipe.inference_state``)."""
    if isinstance(params, dict) and VQ_STATE in params:
        p = dict(params)
        return {VQ_STATE: p.pop(VQ_STATE), "params": p}
    return {"params": params}


def _decoder_output(m: VQVAEConfig, recon: jax.Array):
    """What :mod:`gmzoo.losses.likelihoods` reads: Bernoulli logits, or (mean, log scale)."""
    return recon if m.likelihood == "bernoulli" else (recon, jnp.full_like(recon, m.log_scale))


def _loss(m: VQVAEConfig, nets: VQNets):
    """``loss_fn(params, batch, key[, model_state]) -> (loss, metrics)`` (eq. 3, nats per
    example). With the EMA codebook in training (``model_state`` given) the codebook is
    updated and the objective returns ``(loss, (metrics, new_model_state))``, the spine's
    convention; held out (no ``model_state``) it reads the codebook from ``params``."""

    def forward(variables, x, key, train):
        rngs = {"restart": key} if m.restart_threshold else None
        if train and VQ_STATE in variables:
            (recon, aux), new = nets.net.apply(variables, x, True, rngs=rngs,
                                               mutable=[VQ_STATE])
            return recon, aux, new
        recon, aux = nets.net.apply(variables, x, False)
        return recon, aux, None

    def loss_fn(params, batch, key, model_state=None):
        variables = _variables(params)
        train = model_state is not None
        if train:
            variables = {**variables, **model_state}
        x = cast_inputs(params, batch["image"])[0]
        recon, aux, new = forward(variables, x, key, train)
        loss, metrics = vq_model.vqvae_loss(recon.astype(jnp.float32), batch["image"], aux,
                                            m.likelihood, log_scale=m.log_scale)
        if train:
            return loss, (metrics, {**model_state, **new})
        return loss, metrics

    return loss_fn


def _recon_log_prob(m: VQVAEConfig, nets: VQNets, params, x) -> jax.Array:
    """log p(x | z_q(k(x))) ``[B]`` in nats, the codebook fixed (eval mode)."""
    recon, _ = nets.net.apply(_variables(params), x, False)
    return resolve_likelihood(m.likelihood)(x, _decoder_output(m, recon.astype(jnp.float32)))


def _num_codes_per_example(nets: VQNets) -> int:
    return sum(h * w for h, w in nets.code_shapes)


def _likelihoods(m: VQVAEConfig, nets: VQNets, eval_cfg: EvalConfig) -> dict[str, Callable]:
    """The ELBO with the uniform prior over the L codes: log p(x | z_q) - L log K."""
    del eval_cfg
    codes = _num_codes_per_example(nets)

    def elbo(params, x, key):
        return _recon_log_prob(m, nets, params, x) - codes * math.log(m.num_codes)

    return {f"ELBO, uniform prior over the {codes} codes (log p(x|z_q) - L log K)": elbo}


def decode_codes(m: VQVAEConfig, net: nn.Module, params, codes: tuple[jax.Array, ...], *,
                 mean: bool, key: jax.Array) -> jax.Array:
    """Images ``[n, H, W, C]`` in the data space from code maps (one, or top and bottom): the
    likelihood's mean or a draw from it."""
    recon = net.apply(_variables(params), *codes, method="decode_codes").astype(jnp.float32)
    return sample_likelihood(key, _decoder_output(m, recon), likelihood=m.likelihood, mean=mean)


def _sampler(m: VQVAEConfig, nets: VQNets, *, mean: bool = True, sampling=None):
    """Stage 1's own generative model: code maps drawn uniformly (its ELBO's prior), decoded.
    These are noise by design; ``vqvae_prior`` learns the prior that makes samples."""
    del sampling

    def sample(params, key, n):
        keys = jax.random.split(key, len(nets.code_shapes) + 1)
        codes = tuple(jax.random.randint(k, (n, h, w), 0, m.num_codes)
                      for k, (h, w) in zip(keys[1:], nets.code_shapes))
        return decode_codes(m, nets.net, params, codes, mean=mean, key=keys[0])

    return sample


def _report(run: Any, params: Any, out_dir: str) -> dict:
    """Codebook usage over one epoch of the training split and over the test split (counts
    accumulated over all of it, not per batch, which would understate both): the codes used
    and the perplexity, per level."""
    from gmzoo.data.pipeline import ordered_batches
    from gmzoo.families.vqvae.quantizer import perplexity

    del out_dir
    nets, cfg = run.module, run.config
    encode = jax.jit(lambda p, x: nets.net.apply(_variables(p), x, method="encode"))
    levels = ("top", "bottom") if _is_two_level(nets.config) else ("",)
    key = jax.random.key(cfg.eval.seed)
    lines = {}
    for split, source, limit in (("an epoch of the training split", run.train_source, 0),
                                 ("the test split", run.test_source, cfg.eval.max_examples)):
        counts = [np.zeros(nets.config.num_codes) for _ in levels]
        for i, batch in enumerate(ordered_batches(source, cfg.eval.batch_size, limit)):
            x = run.space.prepare(batch, jax.random.fold_in(key, i))["image"]
            codes = encode(params, x)
            codes = codes if isinstance(codes, tuple) else (codes,)
            for c, k in zip(counts, codes):
                c += np.bincount(np.asarray(k).reshape(-1), minlength=len(c))
        for name, c in zip(levels, counts):
            prefix = f"{name} " if name else ""
            lines[f"{prefix}codes used over {split}"] = f"{int((c > 0).sum())} of {len(c)}"
            lines[f"{prefix}code perplexity over {split}"] = float(perplexity(jnp.asarray(c)))
    return lines


def _check(config: ExperimentConfig, image_shape: tuple[int, ...]) -> None:
    m, d = config.model, config.data
    fits = (d.binarize in ("fixed", "dynamic") if m.likelihood == "bernoulli"
            else d.binarize == "none" and d.scale == "unit" and d.dequantize)
    if not fits:
        raise ConfigError(f"model.likelihood={m.likelihood} models data with "
                          f"{_LIKELIHOOD_DATA[m.likelihood]}")
    if m.restart_threshold and m.update != "ema":
        raise ConfigError(f"model.restart_threshold={m.restart_threshold} restarts codes of the "
                          "EMA codebook: set model.update=ema (or restart_threshold=0)")
    if not 0.0 < m.decay < 1.0 or not m.eps > 0:
        raise ConfigError(f"model.decay={m.decay} must be in (0, 1) and model.eps={m.eps} > 0")
    try:
        nets = _build(m, image_shape, 2)
        shapes = code_shapes(nets.net)
    except ValueError as e:
        raise ConfigError(f"{d.name} images {tuple(image_shape)} do not fit model {m.name}: "
                          f"{e}") from None
    n_train = len(registry.load(d.name, "train", data_dir=d.data_dir))
    vectors = n_train * min(h * w for h, w in shapes)
    if m.num_codes > vectors:
        raise ConfigError(f"model.num_codes={m.num_codes} is larger than the data: {d.name}'s "
                          f"{n_train} training images give {vectors} code vectors per level; "
                          f"use at most {vectors}")


# --- defaults -----------------------------------------------------------------------------

_BINARY_MNIST = DataConfig(name="mnist5k", binarize="dynamic")
_OPTIM = OptimConfig(learning_rate=1e-3, schedule="cosine", warmup_steps=200, ema_decay=0.999)


def _experiment(model, steps: int = 3000):
    every = max(steps // 2, 1)
    return lambda: ExperimentConfig(
        model=model, data=_BINARY_MNIST, optim=_OPTIM,
        train=TrainConfig(steps=steps, batch_size=100, log_every=100, eval_every=every,
                          sample_every=every, checkpoint_every=every),
        eval=EvalConfig(), sample=SampleConfig())


def _stage1(name: str, description: str, model: VQVAEConfig, tiny: tuple[str, ...]) -> Recipe:
    return Recipe(name=name, description=description, config_cls=type(model),
                  default=_experiment(model), build=_build, check=_check, init=_init,
                  loss=_loss, sampler=_sampler, likelihoods=_likelihoods, report=_report,
                  inference_state=(VQ_STATE,), tiny=tiny)


RECIPES: tuple[Recipe, ...] = (
    _stage1("vqvae", "VQ-VAE: conv encoder, nearest of K codes (EMA codebook, straight-through "
            "gradient), conv decoder; prior over codes: vqvae_prior", VQVAEConfig(),
            ("model.num_codes=16", "model.code_dim=4", "model.hidden=8")),
    _stage1("vqvae2", "VQ-VAE-2: top and bottom code maps (28x28 -> 7x7 and 14x14), the bottom "
            "encoder conditioned on the top codes; priors over both: vqvae_prior",
            VQVAE2Config(), ("model.num_codes=16", "model.code_dim=4", "model.hidden=8")),
)
