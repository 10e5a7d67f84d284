"""Recipes of discrete-time diffusion: ``ddpm``, ``ddpm_cond`` (class-conditional, classifier-free
guidance, plus a noise-conditional classifier for classifier guidance) and ``cascaded`` (a
low-resolution model followed by a super-resolution model).

Data are images in [-1, 1] on their stored levels (``data.scale=symmetric``, no dequantization),
so the variational bound is a bound on the discrete NLL, comparable with the baselines that
``gmzoo evaluate`` prints beside it.

A network's noise-conditioning input is the integer step ``t`` as a float. Samplers: ``ddpm``
(ancestral, all T steps), ``ddim`` (any number of steps, ``eta``), and, for the linear schedule,
the score-SDE solvers ``em``, ``rd``, ``pc`` and ``ode`` through the VP SDE whose discretisation
the linear schedule is (beta(t) = 0.1 + 19.9 t; step index c = tT - 1).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from gmzoo.config import (ConfigError, DataConfig, EvalConfig, ExperimentConfig, OptimConfig,
                          SampleConfig, TrainConfig, at_least, choice, non_negative)
from gmzoo.diffusion import guidance, parameterization, samplers, schedules, solvers
from gmzoo.diffusion.sde import VPSDE
from gmzoo.losses import diffusion as losses
from gmzoo.models.diffusion import NoiseClassifier
from gmzoo.nn.unet import UNet, unet_config_error, unet_shape_error
from gmzoo.nn.tree import param_dtype
from gmzoo.recipes.base import Recipe, sample_labels

DISCRETE_SAMPLERS = ("ddpm", "ddim")
SDE_SAMPLERS = ("em", "rd", "pc", "ode")
DEFAULT_STEPS = {"ddim": 100, "em": 1000, "rd": 1000, "pc": 1000, "ode": 100}


@dataclasses.dataclass(frozen=True)
class DiffusionSampleConfig(SampleConfig):
    """How a diffusion or score model draws (``gmzoo sample --sampler ... --steps ...``, or
    ``--set sample.X=...``).

    Attributes:
      sampler: ``""`` (the model's default) or one the model lists in ``gmzoo list``: ``ddpm``
        (ancestral), ``ddim``, ``em`` (reverse-SDE Euler-Maruyama), ``rd`` (reverse-diffusion
        predictor), ``pc`` (predictor-corrector), ``ode`` (probability-flow ODE).
      steps: sampler steps; 0: the model's default (all T steps for ``ddpm``).
      eta: DDIM noise (0: deterministic, 1: DDPM-like).
      guidance: guidance weight w (classifier-free: (1 + w) eps(x, c) - w eps(x); classifier:
        the scale of grad log p(c | x_t)); 0: none.
      guide: ``free`` (classifier-free; class-conditional models) or ``classifier`` (models
        trained with a noise-conditional classifier).
      class_label: the class to draw; -1: classes 0..K-1 in turn (conditional models).
      ode_method: ``euler``, ``heun`` or ``rk4`` for the ``ode`` sampler.
      corrector_steps, snr: Langevin corrector of ``pc`` (Song et al. 2021).
      clip: clip the predicted x_0 to the data range [-1, 1] (DDPM, DDIM).
    """

    sampler: str = ""
    steps: int = non_negative(0)
    eta: float = non_negative(0.0)
    guidance: float = non_negative(0.0)
    guide: str = choice("free", "classifier")
    class_label: int = at_least(-1, -1)
    ode_method: str = choice("rk4", "euler", "heun")
    corrector_steps: int = non_negative(1)
    snr: float = non_negative(0.16)
    clip: bool = True


@dataclasses.dataclass(frozen=True)
class DiffusionEvalConfig(EvalConfig):
    """``gmzoo evaluate`` options of the diffusion and score families.

    Attributes:
      vlb_timesteps: the discrete variational bound: 0 sums all T terms, K > 0 a stratified
        estimate from K of them.
      ode_steps, ode_method: the probability-flow ODE likelihood's fixed steps and solver.
      ode_grid: ``logsnr`` (equal steps in log SNR) or ``uniform`` in t (see
        :func:`gmzoo.diffusion.solvers.time_grid`).
      trace: ``hutchinson`` or ``exact`` divergence (small images only).
    """

    vlb_timesteps: int = non_negative(0)
    ode_steps: int = non_negative(100)
    ode_method: str = choice("rk4", "euler", "heun")
    ode_grid: str = choice("logsnr", "uniform")
    trace: str = choice("hutchinson", "exact")


@dataclasses.dataclass(frozen=True)
class UNetFields:
    """The U-Net's widths (:class:`gmzoo.nn.unet.UNet`); the default is 0.18M parameters at 8x8
    (``SmallUNet`` of the benchmarks)."""

    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (4,)
    num_heads: int = 1
    dropout: float = 0.0
    num_groups: int = 8


@dataclasses.dataclass(frozen=True)
class DDPMConfig(UNetFields):
    """DDPM (Ho et al. 2020) with a U-Net; ``conditional`` adds a class embedding trained with
    label dropout (classifier-free guidance); ``classifier`` trains a noise-conditional
    classifier alongside (classifier guidance)."""

    name: str = "ddpm"
    schedule: str = "linear"  # linear | cosine
    num_steps: int = 1000  # T
    prediction: str = "eps"  # eps | x0 | v
    variance: str = "posterior"  # reverse variance: posterior (beta~) | beta
    num_classes: int = 10
    conditional: bool = False
    label_dropout: float = 0.1
    classifier: bool = False
    classifier_channels: int = 16


@dataclasses.dataclass(frozen=True)
class CascadeConfig(UNetFields):
    """Cascaded diffusion (Ho et al. 2022): a DDPM at 1/``factor`` resolution, and a DDPM at
    full resolution conditioned on the upsampled low-resolution image, with Gaussian
    conditioning augmentation of std ``cond_noise``."""

    name: str = "cascaded"
    factor: int = 2
    low_channel_mults: tuple[int, ...] = (1,)
    low_attention_resolutions: tuple[int, ...] = (4,)
    schedule: str = "linear"
    num_steps: int = 1000
    prediction: str = "eps"
    variance: str = "posterior"
    cond_noise: float = 0.1


@dataclasses.dataclass(frozen=True)
class DiffusionNets:
    """The networks of one model (Linen modules; parameters live in the train state under the
    same names)."""

    denoiser: Any
    classifier: Any = None
    num_levels: int = 256
    image_shape: tuple[int, ...] = ()
    factor: int = 1  # cascades: the low-resolution model works at 1/factor


def make_unet(m: UNetFields, *, num_classes: int = 0, channel_mults=None,
              attention_resolutions=None) -> UNet:
    return UNet(base_channels=m.base_channels,
                channel_mults=tuple(channel_mults or m.channel_mults),
                num_res_blocks=m.num_res_blocks,
                attention_resolutions=tuple(attention_resolutions if attention_resolutions
                                            is not None else m.attention_resolutions),
                num_heads=m.num_heads, dropout=m.dropout, num_classes=num_classes,
                num_groups=m.num_groups)


def apply_of(module) -> Callable:
    """``apply(params, x, c, y=None, cond=None)`` of a Linen module on its own params, with
    float inputs cast to the params' dtype (bfloat16 compute)."""

    def apply(params, x, *args, **kwargs):
        return module.apply({"params": params}, x.astype(param_dtype(params)), *args, **kwargs)

    return apply


# --- checks -------------------------------------------------------------------------------

def check_data(config: ExperimentConfig, what: str) -> None:
    d = config.data
    if d.binarize != "none" or d.scale != "symmetric" or d.dequantize:
        raise ConfigError(f"{what} models images in [-1, 1] on their levels: set data.binarize=none "
                          "data.scale=symmetric data.dequantize=false")


def check_schedule(m) -> None:
    if m.schedule not in schedules.SCHEDULES:
        raise ConfigError(f"model.schedule={m.schedule!r}; choose one of {', '.join(schedules.SCHEDULES)}")
    if m.num_steps < 2:
        raise ConfigError(f"model.num_steps={m.num_steps} must be >= 2")
    if m.prediction not in ("eps", "x0", "v"):
        raise ConfigError(f"model.prediction={m.prediction!r}; choose one of eps, x0, v")
    if m.variance not in samplers.VARIANCES:
        raise ConfigError(f"model.variance={m.variance!r}; choose one of {', '.join(samplers.VARIANCES)}")


def check_unet(m: UNetFields, image_shape, what="", channel_mults=None) -> None:
    mults = tuple(channel_mults or m.channel_mults)
    error = (unet_config_error(m.base_channels, mults, m.num_groups, m.num_heads,
                               bool(m.attention_resolutions))
             or unet_shape_error(tuple(image_shape), mults))
    if error is None and m.num_res_blocks < 1:
        error = f"num_res_blocks={m.num_res_blocks} must be >= 1"
    if error is None and not 0.0 <= m.dropout < 1.0:
        error = f"dropout={m.dropout} must be in [0, 1)"
    if error:
        raise ConfigError(f"model {what}U-Net for images {tuple(image_shape)}: {error}")


def _check_ddpm(config: ExperimentConfig, image_shape) -> None:
    m = config.model
    check_data(config, m.name)
    check_schedule(m)
    check_unet(m, image_shape)
    if (m.conditional or m.classifier) and m.num_classes < 2:
        raise ConfigError(f"model.num_classes={m.num_classes}: class conditioning needs >= 2")
    if not 0.0 <= m.label_dropout < 1.0:
        raise ConfigError(f"model.label_dropout={m.label_dropout} must be in [0, 1)")


def check_discrete_sampling(m, s: DiffusionSampleConfig, *, conditional=False, classifier=False) -> None:
    """Sampler options a discrete-time model can take (before any compute)."""
    name = s.sampler or "ddpm"
    if name == "ddpm" and s.steps not in (0, m.num_steps):
        raise ConfigError(f"sample.steps={s.steps}: the ddpm sampler takes all T={m.num_steps} "
                          "steps; use --sampler ddim for fewer")
    if name == "ddim" and s.steps > m.num_steps:
        raise ConfigError(f"sample.steps={s.steps}: ddim takes at most T={m.num_steps} steps")
    if name in SDE_SAMPLERS and m.schedule != "linear":
        raise ConfigError(f"sample.sampler={name}: the SDE solvers run a DDPM through its VP SDE, "
                          "which only the linear schedule discretises; use ddpm or ddim")
    if s.eta > 1.0:
        raise ConfigError(f"sample.eta={s.eta} must be in [0, 1]")
    if s.guidance > 0 and s.guide == "free" and not conditional:
        raise ConfigError("sample.guide=free (classifier-free guidance) needs a class-conditional "
                          "model (ddpm_cond, or model.conditional=true)")
    if s.guidance > 0 and s.guide == "classifier" and not classifier:
        raise ConfigError("sample.guide=classifier needs a model trained with its noise-conditional "
                          "classifier (model.classifier=true, as in ddpm_cond)")
    if s.class_label >= 0 and not (conditional or (classifier and s.guidance > 0)):
        raise ConfigError(f"sample.class_label={s.class_label}: this model is unconditional "
                          "(train ddpm_cond, or guide with its classifier)")
    num_classes = getattr(m, "num_classes", 0)
    if s.class_label >= num_classes > 0:
        raise ConfigError(f"sample.class_label={s.class_label}: the model has classes 0..{num_classes - 1}")


# --- noise functions and samplers ----------------------------------------------------------


def eps_network(apply: Callable, params: Any, prediction: str, coeffs_of_c: Callable,
                cond: jax.Array | None = None) -> Callable:
    """``eps(x, c, y) ``: the noise implied by any network output at noise level ``c``."""

    def eps(x, c, y=None):
        out = apply(params, x, c.astype(jnp.float32), y, cond)
        return parameterization.eps_and_x0(prediction, out, x, *coeffs_of_c(c))[0]

    return eps


def guided_eps(eps: Callable, s: DiffusionSampleConfig, y: jax.Array | None, *, null_label: int = -1,
               log_prob: Callable | None = None, sigma_of_c: Callable | None = None) -> Callable:
    """``eps(x, c)`` with the guidance ``s`` asks for: classifier-free (conditional network,
    null label ``null_label``), classifier (``log_prob(x, c) -> [B, K]``) or none."""
    if s.guidance > 0 and s.guide == "free":
        return guidance.classifier_free_batched(eps, y, null_label, s.guidance)
    base = lambda x, c: eps(x, c, y if null_label >= 0 else None)
    if s.guidance > 0 and s.guide == "classifier":
        return guidance.classifier_guided(base, log_prob, y, s.guidance, sigma_of_c)
    return base


def run_discrete_sampler(make_eps: Callable, schedule: schedules.Schedule, s: DiffusionSampleConfig,
                         variance: str, key: jax.Array, x_T: jax.Array) -> jax.Array:
    """One of ``ddpm``, ``ddim``, ``em``, ``rd``, ``pc``, ``ode`` from ``x_T``.

    ``make_eps(coeffs_of_c, to_c) -> eps(x, t)`` builds the (guided) noise function for a time
    variable: integer steps for ``ddpm``/``ddim`` and, for the SDE solvers, SDE times t mapped
    to the step index c = tT - 1 of the linear schedule's VP SDE.
    """
    name = s.sampler or "ddpm"
    clip = (-1.0, 1.0) if s.clip else None
    discrete_coeffs = lambda c: schedules.coeffs(schedule, jnp.round(c).astype(jnp.int32))
    if name in DISCRETE_SAMPLERS:
        eps = make_eps(discrete_coeffs)
        if name == "ddpm":
            return samplers.ddpm_ancestral(eps, key, x_T, schedule, clip=clip, variance=variance)
        return samplers.ddim(eps, key, x_T, schedule, num_steps=s.steps or DEFAULT_STEPS["ddim"],
                             eta=s.eta, clip=clip)
    T = schedule.num_steps
    sde = VPSDE(beta_min=0.1, beta_max=20.0)
    to_t = lambda c: (c + 1.0) / T
    eps = make_eps(lambda c: sde.marginal_coeffs(to_t(c)))
    score_fn = lambda x, t: -eps(x, t * T - 1.0) / sde.marginal_coeffs(t)[1].reshape(
        (-1,) + (1,) * (x.ndim - 1))
    return run_sde_sampler(sde, score_fn, s, key, x_T, eps=1.0 / T)


def run_sde_sampler(sde, score_fn: Callable, s: DiffusionSampleConfig, key: jax.Array, x_T: jax.Array,
                    *, eps: float = 1e-3) -> jax.Array:
    """``em``, ``rd``, ``pc`` or ``ode`` on ``sde`` with ``score_fn(x, t)``, from T to ``eps``."""
    name = s.sampler
    ts = solvers.time_grid(sde, s.steps or DEFAULT_STEPS[name], eps)
    if name == "em":
        return solvers.euler_maruyama(score_fn, key, x_T, sde, ts)
    if name == "rd":
        return solvers.reverse_diffusion(score_fn, key, x_T, sde, ts)
    if name == "pc":
        return solvers.pc_sampler(score_fn, key, x_T, sde, ts, corrector_steps=s.corrector_steps,
                                  snr=s.snr)
    return solvers.ode_sample(score_fn, key, x_T, sde, ts, method=s.ode_method)


# --- ddpm / ddpm_cond ------------------------------------------------------------------------

def _build_ddpm(m: DDPMConfig, image_shape, num_levels) -> DiffusionNets:
    classifier = None
    if m.classifier:
        classifier = NoiseClassifier(num_classes=m.num_classes, base_channels=m.classifier_channels,
                                     channel_mults=tuple(m.channel_mults),
                                     num_groups=min(m.num_groups, m.classifier_channels))
    return DiffusionNets(make_unet(m, num_classes=m.num_classes if m.conditional else 0),
                         classifier, num_levels, tuple(image_shape))


def _init_ddpm(nets: DiffusionNets, key, batch):
    k1, k2 = jax.random.split(key)
    x, t = batch["image"], jnp.zeros((batch["image"].shape[0],))
    params = {"denoiser": nets.denoiser.init(k1, x, t)["params"]}
    if nets.classifier is not None:
        params["classifier"] = nets.classifier.init(k2, x, t)["params"]
    return {"params": params}


def _ddpm_loss(m: DDPMConfig, nets: DiffusionNets):
    schedule = schedules.make(m.schedule, m.num_steps)
    denoise = apply_of(nets.denoiser)
    apply_fn = lambda p, x, c, y, cond: denoise(p["denoiser"], x, c, y, cond)
    simple = functools.partial(losses.simple_loss, apply_fn=apply_fn, schedule=schedule,
                               prediction=m.prediction,
                               num_classes=m.num_classes if m.conditional else 0,
                               label_dropout=m.label_dropout)
    if nets.classifier is None:
        return simple
    classify = apply_of(nets.classifier)
    clf = functools.partial(losses.noisy_classifier_loss, schedule=schedule,
                            apply_fn=lambda p, x, c: classify(p["classifier"], x, c))

    def loss_fn(params, batch, key):  # independent parameters: the sum trains both
        k1, k2 = jax.random.split(key)
        l1, m1 = simple(params, batch, k1)
        l2, m2 = clf(params, batch, k2)
        return l1 + l2, {**m1, **m2}

    return loss_fn


def _ddpm_sampler(m: DDPMConfig, nets: DiffusionNets, *, mean: bool = True,
                  sampling: DiffusionSampleConfig = DiffusionSampleConfig()):
    schedule = schedules.make(m.schedule, m.num_steps)
    denoise, s = apply_of(nets.denoiser), sampling
    classify = apply_of(nets.classifier) if nets.classifier is not None else None

    def sample(params, key, n):
        y = sample_labels(n, s, m.num_classes) if (m.conditional or m.classifier) else None
        log_prob = None
        if classify is not None:
            log_prob = lambda x, c: jax.nn.log_softmax(classify(params["classifier"], x, c))

        def make_eps(coeffs_of_c):
            eps = eps_network(denoise, params["denoiser"], m.prediction, coeffs_of_c)
            return guided_eps(eps, s, y, null_label=m.num_classes if m.conditional else -1,
                              log_prob=log_prob, sigma_of_c=lambda c: coeffs_of_c(c)[1])

        k_T, k_s = jax.random.split(key)
        x_T = jax.random.normal(k_T, (n, *nets.image_shape))
        return run_discrete_sampler(make_eps, schedule, s, m.variance, k_s, x_T)

    return sample


def _check_ddpm_sampling(m: DDPMConfig, s: DiffusionSampleConfig) -> None:
    check_discrete_sampling(m, s, conditional=m.conditional, classifier=m.classifier)


def _ddpm_likelihoods(m: DDPMConfig, nets: DiffusionNets, eval_cfg) -> dict[str, Callable]:
    """The variational bound (all T terms, or ``eval.vlb_timesteps`` stratified), and for the
    linear schedule the probability-flow ODE likelihood through the VP SDE."""
    from gmzoo.recipes.score import ode_likelihood_fn

    schedule = schedules.make(m.schedule, m.num_steps)
    denoise = apply_of(nets.denoiser)
    apply_fn = lambda p, x, c, y, cond: denoise(p["denoiser"], x, c, y, cond)
    K = eval_cfg.vlb_timesteps

    def bound(params, x, key):
        return -losses.vlb(params, x, key, apply_fn=apply_fn, schedule=schedule,
                           prediction=m.prediction, num_levels=nets.num_levels,
                           variance=m.variance, num_timesteps=K)

    label = "variational bound" + (f" (stratified, {K} of T={m.num_steps} terms)" if 0 < K < m.num_steps
                                   else f" (all T={m.num_steps} terms)")
    out = {label: bound}
    if m.schedule == "linear":
        sde, T = VPSDE(beta_min=0.1, beta_max=20.0), m.num_steps

        def score_fn(params, x, t):
            c = t * T - 1.0
            out = denoise(params["denoiser"], x, c, None, None)
            return parameterization.score(m.prediction, out, x, *sde.marginal_coeffs(t))

        out.update(ode_likelihood_fn(sde, score_fn, nets.num_levels, eval_cfg, eps=1.0 / T))
    return out


_DIGITS = DataConfig(name="digits", scale="symmetric")
_TRAIN = TrainConfig(steps=6000, batch_size=128, log_every=200, eval_every=0, sample_every=2000,
                     checkpoint_every=2000)
_OPTIM = OptimConfig(learning_rate=1e-3, schedule="cosine", warmup_steps=200, grad_clip_norm=1.0,
                     ema_decay=0.999)
_EVAL_SAMPLES = DiffusionSampleConfig(sampler="ddim", steps=100)


def experiment(model, *, data=_DIGITS, sample=_EVAL_SAMPLES, **train) -> Callable[[], ExperimentConfig]:
    return lambda: ExperimentConfig(model=model, data=data, optim=_OPTIM,
                                    train=dataclasses.replace(_TRAIN, **train),
                                    eval=DiffusionEvalConfig(num_samples=1000, batch_size=120),
                                    sample=sample)


def _ddpm_recipe(name: str, description: str, model: DDPMConfig) -> Recipe:
    return Recipe(name=name, description=description, config_cls=DDPMConfig,
                  default=experiment(model), build=_build_ddpm, check=_check_ddpm,
                  init=_init_ddpm, loss=_ddpm_loss, sampler=_ddpm_sampler,
                  samplers=DISCRETE_SAMPLERS + SDE_SAMPLERS,
                  check_sampling=_check_ddpm_sampling, likelihoods=_ddpm_likelihoods,
                  sample_batch=500, uses_labels=lambda m: m.conditional or m.classifier)


# --- cascaded ------------------------------------------------------------------------------

def downsample(x: jax.Array, factor: int) -> jax.Array:
    """Average pooling by ``factor``: ``[B, H, W, C] -> [B, H/f, W/f, C]``."""
    b, h, w, c = x.shape
    return x.reshape(b, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


def upsample(x: jax.Array, factor: int) -> jax.Array:
    """Nearest-neighbour upsampling by ``factor``."""
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def _check_cascade(config: ExperimentConfig, image_shape) -> None:
    m = config.model
    check_data(config, m.name)
    check_schedule(m)
    h, w, _ = image_shape
    if m.factor < 2 or h % m.factor or w % m.factor:
        raise ConfigError(f"model.factor={m.factor} must be >= 2 and divide the image size {h}x{w}")
    check_unet(m, image_shape, "super-resolution ")
    low = (h // m.factor, w // m.factor, image_shape[2])
    check_unet(dataclasses.replace(m, attention_resolutions=m.low_attention_resolutions), low,
               "low-resolution ", channel_mults=m.low_channel_mults)
    if m.cond_noise < 0:
        raise ConfigError(f"model.cond_noise={m.cond_noise} must be >= 0")


def _build_cascade(m: CascadeConfig, image_shape, num_levels) -> DiffusionNets:
    low = make_unet(m, channel_mults=m.low_channel_mults,
                    attention_resolutions=m.low_attention_resolutions)
    # denoiser = (low-resolution model, super-resolution model)
    return DiffusionNets((low, make_unet(m)), None, num_levels, tuple(image_shape), m.factor)


def _init_cascade(nets: DiffusionNets, key, batch):
    k1, k2 = jax.random.split(key)
    low_net, sr_net = nets.denoiser
    x = batch["image"]
    t = jnp.zeros((x.shape[0],))
    return {"params": {"low": low_net.init(k1, downsample(x, nets.factor), t)["params"],
                       "sr": sr_net.init(k2, x, t, None, x)["params"]}}


def _cascade_loss(m: CascadeConfig, nets: DiffusionNets):
    schedule = schedules.make(m.schedule, m.num_steps)
    low_apply, sr_apply = (apply_of(n) for n in nets.denoiser)
    kw = dict(schedule=schedule, prediction=m.prediction)
    low_loss = functools.partial(losses.simple_loss, **kw,
                                 apply_fn=lambda p, x, c, y, cond: low_apply(p["low"], x, c))
    sr_loss = functools.partial(losses.simple_loss, **kw,
                                apply_fn=lambda p, x, c, y, cond: sr_apply(p["sr"], x, c, None, cond))

    def loss_fn(params, batch, key):
        k1, k2, k3 = jax.random.split(key, 3)
        x = batch["image"]
        low = downsample(x, m.factor)
        cond = upsample(low, m.factor)
        cond = cond + m.cond_noise * jax.random.normal(k3, cond.shape)  # conditioning augmentation
        l1, m1 = low_loss(params, {"image": low}, k1)
        l2, m2 = sr_loss(params, {"image": x, "cond": cond}, k2)
        return l1 + l2, {"mse_low": m1["mse"], "mse_sr": m2["mse"]}

    return loss_fn


def _cascade_sampler(m: CascadeConfig, nets: DiffusionNets, *, mean: bool = True,
                     sampling: DiffusionSampleConfig = DiffusionSampleConfig()):
    schedule = schedules.make(m.schedule, m.num_steps)
    low_apply, sr_apply = (apply_of(n) for n in nets.denoiser)
    h, w, c = nets.image_shape

    def sample(params, key, n):
        k1, k2, k3, k4, k5 = jax.random.split(key, 5)
        low_T = jax.random.normal(k1, (n, h // m.factor, w // m.factor, c))
        make_low = lambda co: guided_eps(
            eps_network(lambda p, x, cc, y, cond: low_apply(p, x, cc), params["low"],
                        m.prediction, co), sampling, None)
        low = run_discrete_sampler(make_low, schedule, sampling, m.variance, k2, low_T)
        cond = upsample(low, m.factor)
        cond = cond + m.cond_noise * jax.random.normal(k3, cond.shape)
        make_sr = lambda co: guided_eps(
            eps_network(sr_apply, params["sr"], m.prediction, co, cond=cond), sampling, None)
        x_T = jax.random.normal(k4, (n, h, w, c))
        return run_discrete_sampler(make_sr, schedule, sampling, m.variance, k5, x_T)

    return sample


def _check_cascade_sampling(m: CascadeConfig, s: DiffusionSampleConfig) -> None:
    check_discrete_sampling(m, s)


RECIPES: tuple[Recipe, ...] = (
    _ddpm_recipe("ddpm", "DDPM, U-Net, L_simple (digits in [-1, 1]); bound + PF-ODE likelihood",
                 DDPMConfig(name="ddpm")),
    _ddpm_recipe("ddpm_cond", "class-conditional DDPM (label dropout 0.1, classifier-free "
                 "guidance) + noise-conditional classifier (classifier guidance)",
                 DDPMConfig(name="ddpm_cond", conditional=True, classifier=True)),
    Recipe(name="cascaded", description="cascaded DDPM: 4x4 base model + 8x8 super-resolution "
           "model conditioned on the upsampled base sample", config_cls=CascadeConfig,
           default=experiment(CascadeConfig()), build=_build_cascade, check=_check_cascade,
           init=_init_cascade, loss=_cascade_loss, sampler=_cascade_sampler,
           samplers=DISCRETE_SAMPLERS + SDE_SAMPLERS, check_sampling=_check_cascade_sampling,
           sample_batch=500),
)

# Tiny variants (tests, smoke runs): the contract test over the model table trains each row so.
TINY_UNET = ("model.base_channels=8", "model.num_groups=4", "model.channel_mults=(1,)",
             "model.attention_resolutions=()", "sample.steps=3")
_TINY = {"ddpm": TINY_UNET + ("model.num_steps=20",),
         "ddpm_cond": TINY_UNET + ("model.num_steps=20", "model.classifier_channels=8"),
         "cascaded": TINY_UNET + ("model.num_steps=20", "model.low_channel_mults=(1,)",
                                  "model.low_attention_resolutions=()")}
RECIPES = tuple(dataclasses.replace(r, tiny=_TINY[r.name]) for r in RECIPES)
