"""Recipes of the GAN family: ``gan_toy`` on 2-D point sets, ``dcgan``, ``cgan`` and ``wgan_gp``
on image data in [-1, 1].

A GAN is two players, not one loss minimised by one optimizer, so the recipe fills in the
spine's ``train_step`` hook: :func:`gmzoo.train.gan_step.make_gan_train_step` with one Adam per
player (``players_tx``), k = ``model.d_steps`` discriminator updates per generator update, the
generator's EMA (``optim.ema_decay``). Parameters, optimizer states and batch statistics live in
the spine's ``TrainState`` under ``"generator"`` / ``"discriminator"``:

    params       {"generator": g, "discriminator": d}
    model_state  {"generator": {"batch_stats": ...}[, "discriminator": {"batch_stats": ...}]}

- ``gan_toy`` (Goodfellow et al. 2014 on Metz et al. 2017's ring): MLP players on ``ring8``
  (or ``grid25``, ``moons``, ``swiss_roll``), z in R^2, the non-saturating loss; ``gmzoo
  evaluate`` reports modes covered, the high-quality share and the energy distance.
- ``dcgan`` (Radford et al. 2016): DCGAN networks with batch norm, the non-saturating loss.
- ``cgan`` (Mirza & Osindero 2014): the same, conditioned on the batch's labels; the generator
  concatenates a label embedding to z, the discriminator is a projection discriminator
  (Miyato & Koyama 2018) or concatenates the embedding (``model.conditioning=concat``).
- ``wgan_gp`` (Gulrajani et al. 2017): the Wasserstein critic loss + 10 * gradient penalty,
  5 critic updates per generator update, a critic without batch norm.

Batch norm: during training both networks run in train mode (batch statistics) in both phases,
the fakes and the reals normalised as separate batches; each player keeps the running averages
of its own update (the rule of ``gan_step``). The sampler runs the generator (EMA parameters)
in inference mode on *standing statistics* (BigGAN's): the exact batch statistics of the EMA
generator on 1,024 draws, computed inside the compiled sampler, because the running averages
kept in training belong to the raw weights; so a sample depends on its own z only (the DCGAN
reference samples in train mode instead, which couples the samples of a batch). The held-out
loss runs both networks in train mode on the test batch, as training does. With spectral norm,
the held-out loss starts the power iteration from a fresh vector (one step).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from gmzoo.config import (ConfigError, DataConfig, EvalConfig, ExperimentConfig, OptimConfig,
                          SampleConfig, TrainConfig, at_least)
from gmzoo.losses import gan as gan_losses
from gmzoo.models import gan as gan_models
from gmzoo.nn.tree import cast_inputs, param_dtype
from gmzoo.recipes.base import Recipe, sample_labels
from gmzoo.train.gan_step import DISCRIMINATOR, GENERATOR, make_gan_train_step, players_tx
from gmzoo.train.optim import make_optimizer


@dataclasses.dataclass(frozen=True)
class GANConfig:
    """A DCGAN-shaped GAN. The generator's optimizer is ``optim`` (its learning rate is
    ``optim.learning_rate``); the discriminator's is ``optim`` with ``d_learning_rate``."""

    name: str = "dcgan"
    architecture: str = "dcgan"  # dcgan (images) | mlp (dense layers `hidden`; point sets, images)
    hidden: tuple[int, ...] = (64, 64)  # mlp: widths of both players' hidden layers
    latent_dim: int = 64
    features: int = 32  # F: widths F and 2F of both networks
    loss: str = "non_saturating"  # minimax | non_saturating | hinge | least_squares | wasserstein
    d_steps: int = 1  # discriminator updates per generator update
    d_learning_rate: float = 2e-4
    gp_weight: float = 0.0  # lambda of the gradient penalty (WGAN-GP: 10); 0: none
    gp_one_sided: bool = False  # penalise only norms above 1, max(0, |grad| - 1)^2
    batch_norm: bool = True  # batch norm in the discriminator (never with a gradient penalty)
    spectral_norm: bool = False  # spectral norm on every discriminator weight (replaces its BN)
    conditional: bool = False
    num_classes: int = 10
    conditioning: str = "projection"  # projection | concat (the discriminator's)
    label_features: int = 16


@dataclasses.dataclass(frozen=True)
class GANNets:
    """The two players (Linen modules; parameters under the same names in the train state)."""

    generator: nn.Module
    discriminator: nn.Module
    latent_dim: int
    num_classes: int  # 0: unconditional


# --- checks -------------------------------------------------------------------------------

ARCHITECTURES = ("dcgan", "mlp")


def _check(config: ExperimentConfig, image_shape: tuple[int, ...]) -> None:
    m, d = config.model, config.data
    points = len(image_shape) == 1
    if m.architecture not in ARCHITECTURES:
        raise ConfigError(f"model.architecture={m.architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    if m.architecture == "dcgan" and points:
        raise ConfigError(f"model.architecture=dcgan needs images; {d.name} is a set of 2-D points: "
                          "use gan_toy (or model.architecture=mlp)")
    if m.architecture == "dcgan":
        error = gan_models.dcgan_image_shape_error(tuple(image_shape))
        if error:
            raise ConfigError(f"{d.name} images {tuple(image_shape)} do not fit model {m.name}: {error}")
    if not m.hidden or any(h < 1 for h in m.hidden):
        raise ConfigError(f"model.hidden={m.hidden} must be one or more positive widths")
    if m.loss not in gan_losses.GAN_LOSSES:
        raise ConfigError(f"model.loss={m.loss!r}; choose one of {', '.join(gan_losses.GAN_LOSSES)}")
    if m.conditioning not in gan_models.CONDITIONINGS:
        raise ConfigError(f"model.conditioning={m.conditioning!r}; choose one of "
                          f"{', '.join(gan_models.CONDITIONINGS)}")
    for field in ("latent_dim", "features", "d_steps", "label_features"):
        if getattr(m, field) < 1:
            raise ConfigError(f"model.{field}={getattr(m, field)} must be >= 1")
    if m.conditional and m.num_classes < 1:
        raise ConfigError(f"model.num_classes={m.num_classes} must be >= 1 for a conditional GAN")
    if not m.d_learning_rate > 0:
        raise ConfigError(f"model.d_learning_rate={m.d_learning_rate} must be > 0")
    if m.gp_weight < 0:
        raise ConfigError(f"model.gp_weight={m.gp_weight} must be >= 0")
    if m.gp_weight > 0 and m.batch_norm and not m.spectral_norm and m.architecture == "dcgan":
        raise ConfigError(f"model.gp_weight={m.gp_weight} needs a discriminator without batch norm "
                          "(it couples the examples whose input gradients the penalty takes): set "
                          "model.batch_norm=false")
    if not points and (d.binarize != "none" or d.scale != "symmetric"):
        raise ConfigError(f"model {m.name} generates images in [-1, 1] (tanh): set "
                          "data.binarize=none data.scale=symmetric")


# --- networks -----------------------------------------------------------------------------

def _build(m: GANConfig, image_shape, num_levels) -> GANNets:
    k = m.num_classes if m.conditional else 0
    shape = tuple(int(s) for s in image_shape)
    if m.architecture == "mlp":  # points: unbounded outputs; images: tanh into [-1, 1]
        g = gan_models.MLPGenerator(out_shape=shape, hidden=m.hidden, num_classes=k,
                                    output_activation=None if len(shape) == 1 else jnp.tanh,
                                    label_features=m.label_features)
        d = gan_models.MLPDiscriminator(hidden=m.hidden, spectral_norm=m.spectral_norm,
                                        num_classes=k, conditioning=m.conditioning,
                                        label_features=m.label_features)
        return GANNets(g, d, m.latent_dim, k)
    g = gan_models.DCGANGenerator(image_shape=shape, latent_dim=m.latent_dim, features=m.features,
                                  num_classes=k, label_features=m.label_features)
    d = gan_models.DCGANDiscriminator(image_shape=shape, features=m.features,
                                      batch_norm=m.batch_norm, spectral_norm=m.spectral_norm,
                                      num_classes=k, conditioning=m.conditioning,
                                      label_features=m.label_features)
    return GANNets(g, d, m.latent_dim, k)


def _labels(nets: GANNets, batch: dict) -> jax.Array | None:
    return batch["label"].astype(jnp.int32) if nets.num_classes else None


def _init(nets: GANNets, key: jax.Array, batch: dict) -> dict:
    """``{"params": {"generator", "discriminator"}, "generator": {"batch_stats"}, ...}``: the
    spine keeps everything but ``params`` as the model state."""
    g_key, d_key = jax.random.split(key)
    x, y = batch["image"], _labels(nets, batch)
    z = jnp.zeros((x.shape[0], nets.latent_dim), x.dtype)
    per_player = {GENERATOR: nets.generator.init(g_key, z, y),
                  DISCRIMINATOR: nets.discriminator.init(d_key, x, y)}
    variables: dict[str, Any] = {"params": {p: v["params"] for p, v in per_player.items()}}
    for player, v in per_player.items():
        if "batch_stats" in v:  # (not "intermediates": D sows its features there)
            variables[player] = {"batch_stats": v["batch_stats"]}
    return variables


def forward(module: nn.Module, params: Any, state: dict, key: jax.Array,
            *inputs: jax.Array | None) -> tuple[jax.Array, dict]:
    """``module(*inputs)`` in train mode (batch statistics, a spectral-norm power step, dropout)
    on ``{"params": params, **state}``: ``(output, new state)``. Array inputs are cast to the
    parameters' dtype (bfloat16 compute); ``key`` drives dropout and starts spectral norm's power
    iteration if ``state`` has none. Every adversarial recipe runs its players through this."""
    out, mutated = module.apply({"params": params, **state}, *cast_inputs(params, *inputs), train=True,
                                mutable=["batch_stats"], rngs={"params": key, "dropout": key})
    return out, dict(mutated)


# --- objectives ---------------------------------------------------------------------------

def _objectives(m: GANConfig, nets: GANNets) -> tuple[Callable, Callable]:
    """``d_objective(d, g, batch, key, model_state)`` and ``g_objective(g, d, batch, key,
    model_state)``, each ``-> (loss, (metrics, new_model_state))`` (``gan_step``'s convention)."""
    d_loss_of, g_loss_of = gan_losses.get(m.loss)
    G, D = nets.generator, nets.discriminator

    def fakes(g, model_state, batch, key):
        real = batch["image"]  # [B, H, W, C]
        z = jax.random.normal(key, (real.shape[0], nets.latent_dim))  # [B, Z]
        return forward(G, g, model_state.get(GENERATOR, {}), key, z, _labels(nets, batch))

    def d_objective(d, g, batch, key, model_state):
        """d_loss(D(x), D(G(z))) [+ gp_weight * GP] with G frozen (Algorithm 1's D step)."""
        z_key, gp_key, sn_key = jax.random.split(key, 3)
        real, y = batch["image"], _labels(nets, batch)
        fake, _ = fakes(g, model_state, batch, z_key)  # G's new statistics are not D's to keep
        fake = jax.lax.stop_gradient(fake).astype(real.dtype)
        d_state = model_state.get(DISCRIMINATOR, {})
        real_logits, d_state = forward(D, d, d_state, sn_key, real, y)  # [B]
        fake_logits, d_state = forward(D, d, d_state, sn_key, fake, y)  # [B]
        loss = d_loss_of(real_logits, fake_logits)
        metrics = {"real_score": jnp.mean(real_logits.astype(jnp.float32)),
                   "fake_score": jnp.mean(fake_logits.astype(jnp.float32))}
        if m.gp_weight > 0:
            critic = lambda x: forward(D, d, d_state, sn_key, x, y)[0]
            gp = gan_losses.gradient_penalty(critic, real, fake, gp_key, one_sided=m.gp_one_sided)
            loss = loss + m.gp_weight * gp
            metrics["gradient_penalty"] = gp
        new_state = dict(model_state)
        if DISCRIMINATOR in model_state:
            new_state[DISCRIMINATOR] = d_state
        return loss, (metrics, new_state)

    def g_objective(g, d, batch, key, model_state):
        """g_loss(D(G(z))) with D frozen (Algorithm 1's G step)."""
        z_key, sn_key = jax.random.split(key)
        fake, g_state = fakes(g, model_state, batch, z_key)
        fake_logits, _ = forward(D, d, model_state.get(DISCRIMINATOR, {}), sn_key, fake,
                                 _labels(nets, batch))  # [B]
        new_state = dict(model_state)
        if GENERATOR in model_state:
            new_state[GENERATOR] = g_state
        return g_loss_of(fake_logits), ({"fake_score": jnp.mean(fake_logits.astype(jnp.float32))},
                                        new_state)

    return d_objective, g_objective


def two_player_loss(d_objective: Callable, g_objective: Callable,
                    prepare: Callable | None = None) -> Callable:
    """Held-out ``loss_fn(params, batch, key) -> (g_loss, metrics)`` of a two-player recipe:
    both players' objectives (``gan_step``'s convention with model state, called with ``{}``)
    on a test batch, their metrics prefixed ``d_`` / ``g_``. ``prepare(batch, key)``, if given,
    first builds what the objectives need from the batch (e.g. pix2pix's source)."""

    def loss_fn(params, batch, key):
        if prepare is None:
            d_key, g_key = jax.random.split(key)
        else:
            prep_key, d_key, g_key = jax.random.split(key, 3)
            batch = prepare(batch, prep_key)
        g, d = params[GENERATOR], params[DISCRIMINATOR]
        d_loss, (d_metrics, _) = d_objective(d, g, batch, d_key, {})
        g_loss, (g_metrics, _) = g_objective(g, d, batch, g_key, {})
        metrics = {f"d_{k}": v for k, v in d_metrics.items()}
        metrics.update({f"g_{k}": v for k, v in g_metrics.items()})
        return g_loss, {**metrics, "d_loss": d_loss, "g_loss": g_loss}

    return loss_fn


def _loss(m: GANConfig, nets: GANNets) -> Callable:
    """Held-out ``two_player_loss`` (``d_loss`` includes the penalty), networks in train mode with
    the batch's own statistics (see the module docstring). Training uses ``train_step``."""
    return two_player_loss(*_objectives(m, nets))


def two_player_step(config: ExperimentConfig, d_objective: Callable, g_objective: Callable, *,
                    d_learning_rate: float, d_steps: int = 1, prepare, compute_dtype,
                    with_model_state: bool) -> tuple[Any, Callable]:
    """The spine's ``train_step`` hook for any two-player recipe: ``(players_tx(tx_g, tx_d),
    make_gan_train_step(...))``. The generator's optimizer is ``config.optim``; the
    discriminator's is the same with ``d_learning_rate``, its schedule counting D updates
    (``d_steps`` per step). Objectives follow ``gan_step``'s convention with model state
    (``(mine, other, batch, key, model_state) -> (loss, (metrics, new_model_state))``); without
    batch statistics anywhere they are called with an empty state."""
    optim, steps = config.optim, config.train.steps
    tx_g = make_optimizer(optim, steps)
    tx_d = make_optimizer(dataclasses.replace(optim, learning_rate=d_learning_rate),
                          steps * d_steps)
    if not with_model_state:  # gan_step's stateless convention
        d_objective, g_objective = (stateless(f) for f in (d_objective, g_objective))
    step = make_gan_train_step(d_objective, g_objective, tx_g, tx_d, d_steps=d_steps,
                               ema_decay=optim.ema_decay, prepare=prepare,
                               compute_dtype=compute_dtype, with_model_state=with_model_state)
    return players_tx(tx_g, tx_d), step


def stateless(objective: Callable) -> Callable:
    """An objective with model state as one without: called with ``{}``, its new state dropped."""
    def fn(mine, other, batch, key):
        loss, (metrics, _) = objective(mine, other, batch, key, {})
        return loss, metrics
    return fn


def _train_step(config: ExperimentConfig, nets: GANNets, **kw):
    d_objective, g_objective = _objectives(config.model, nets)
    return two_player_step(config, d_objective, g_objective, d_learning_rate=config.model.d_learning_rate,
                           d_steps=config.model.d_steps, **kw)


@dataclasses.dataclass(frozen=True)
class GANSampleConfig(SampleConfig):
    """A GAN's one sampler, x = G(z): a conditional generator draws ``class_label`` (``gmzoo
    sample --class C``), or the classes 0..K-1 in turn (-1)."""

    class_label: int = at_least(-1, -1)


def check_sampling(m: GANConfig, s: GANSampleConfig) -> None:
    """A conditional GAN takes ``sample.class_label`` within its classes."""
    if s.class_label >= 0 and not m.conditional:
        raise ConfigError(f"sample.class_label={s.class_label}: model {m.name} is unconditional "
                          "(train cgan, or set model.conditional=true)")
    if s.class_label >= m.num_classes:
        raise ConfigError(f"sample.class_label={s.class_label}: the model has classes "
                          f"0..{m.num_classes - 1}")


STANDING_BATCH = 1024  # z draws behind the generator's standing statistics


def standing_statistics(generator: nn.Module, params: Any, latent_dim: int, num_classes: int,
                        key: jax.Array, size: int = STANDING_BATCH) -> dict:
    """The batch statistics of ``generator`` (parameters ``params``, e.g. the EMA ones) on one
    batch of ``size`` draws z ~ N(0, I) (classes 0..K-1 in turn): ``{"batch_stats": ...}``, or
    ``{}`` for a generator without batch norm. BigGAN's "standing statistics" (Brock et al.
    2019, App. C): the running averages kept in training belong to the raw weights, not to their
    EMA. Each batch norm computes them exactly (``bn_momentum=0``: the "running" average is the
    batch's own mean and biased variance)."""
    if not hasattr(generator, "bn_momentum"):
        return {}
    z = jax.random.normal(key, (size, latent_dim))  # [S, Z]
    y = jnp.arange(size, dtype=jnp.int32) % num_classes if num_classes else None
    _, stats = generator.clone(bn_momentum=0.0).apply(
        {"params": params}, z.astype(param_dtype(params)), y, train=True,
        mutable=["batch_stats"])
    return dict(stats)


def _sampler(m: GANConfig, nets: GANNets, *, mean: bool = True, sampling=None):
    """``sample(params, key, n) -> [n, H, W, C]`` in [-1, 1]: x = G(z), z ~ N(0, I), the
    generator's batch norms in inference mode on its :func:`standing_statistics` (drawn with
    ``fold_in(key, 1)``), so each sample is G of its own z alone, whatever else is in the batch.
    Conditional models draw ``sampling.class_label``, or the classes 0..K-1 in turn. ``mean``
    does not apply (G is deterministic given z)."""
    del mean
    sampling = sampling or GANSampleConfig()

    def sample(params, key, n):
        g = params[GENERATOR]
        stats = standing_statistics(nets.generator, g, nets.latent_dim, nets.num_classes,
                                    jax.random.fold_in(key, 1))
        z = jax.random.normal(key, (n, nets.latent_dim))  # [n, Z]
        y = sample_labels(n, sampling, nets.num_classes) if nets.num_classes else None
        x = nets.generator.apply({"params": g, **stats}, z.astype(param_dtype(g)), y,
                                 train=False)
        return x.astype(jnp.float32)  # [n, H, W, C]

    return sample


# --- defaults -----------------------------------------------------------------------------

_DIGITS = DataConfig(name="digits", scale="symmetric")
_TRAIN = TrainConfig(steps=3000, batch_size=64, log_every=100, eval_every=1000, sample_every=500,
                     checkpoint_every=1000)
# Radford et al. 2016: Adam(2e-4, b1 = 0.5), the adversarial recipes' default optimizer
GAN_ADAM = OptimConfig(optimizer="adam", learning_rate=2e-4, b1=0.5, b2=0.999, ema_decay=0.999)


def experiment(model: GANConfig, *, data: DataConfig = _DIGITS, optim: OptimConfig = GAN_ADAM,
               sample: SampleConfig = SampleConfig(), **train) -> Callable[[], ExperimentConfig]:
    return lambda: ExperimentConfig(model=model, data=data, optim=optim,
                                    train=dataclasses.replace(_TRAIN, **train),
                                    eval=EvalConfig(num_samples=1000, batch_size=120),
                                    sample=sample)


def _recipe(name: str, description: str, model: GANConfig, data_kinds=("images",), **kw) -> Recipe:
    return Recipe(name=name, description=description, config_cls=GANConfig,
                  default=experiment(model, sample=GANSampleConfig(), **kw), build=_build,
                  check=_check, init=_init, loss=_loss, sampler=_sampler, train_step=_train_step,
                  uses_labels=lambda m: m.conditional,
                  check_sampling=check_sampling, data_kinds=data_kinds)


RECIPES: tuple[Recipe, ...] = (
    # The ring test's setup (tests/train/test_gan_ring.py): z in R^2, (64, 64) MLPs, batch 256,
    # Adam(1e-3, 0.5, 0.9) for both players.
    _recipe("gan_toy", "MLP GAN, non-saturating loss, on 2-D point sets (ring8 of 8 Gaussians)",
            GANConfig(name="gan_toy", architecture="mlp", latent_dim=2, batch_norm=False,
                      d_learning_rate=1e-3),
            data=DataConfig(name="ring8"), optim=dataclasses.replace(GAN_ADAM, learning_rate=1e-3, b2=0.9),
            data_kinds=("points", "images"), batch_size=256, sample_every=1000),
    _recipe("dcgan", "DCGAN, non-saturating loss, batch norm (digits in [-1, 1])",
            GANConfig(name="dcgan")),
    _recipe("cgan", "conditional DCGAN: label embedding in G, projection discriminator",
            GANConfig(name="cgan", conditional=True)),
    _recipe("wgan_gp", "WGAN-GP: Wasserstein critic + 10 * gradient penalty, 5 critic steps, "
            "no batch norm in the critic",
            GANConfig(name="wgan_gp", loss="wasserstein", d_steps=5, gp_weight=10.0,
                      batch_norm=False, d_learning_rate=2e-4),
            optim=dataclasses.replace(GAN_ADAM, b2=0.9)),
)

# Tiny variants (tests, smoke runs): the contract test over the model table trains each row so.
_TINY = {"gan_toy": ("model.hidden=(16,)",)}
RECIPES = tuple(dataclasses.replace(r, tiny=_TINY.get(r.name, (
    "model.latent_dim=8", "model.features=4", "model.label_features=4"))) for r in RECIPES)
