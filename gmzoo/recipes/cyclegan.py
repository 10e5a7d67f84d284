"""The ``cyclegan`` recipe: unpaired image-to-image translation (Zhu et al. 2017) on the spine.

Four networks, two players of :func:`gmzoo.train.gan_step.make_gan_train_step`:

    params  {"generator": {"g_ab": G, "g_ba": F}, "discriminator": {"d_a": D_A, "d_b": D_B}}

G: A -> B and F: B -> A are ``ResnetGenerator`` s, D_A and D_B ``CycleGANDiscriminator`` s
(PatchGAN with instance norm), so no network has batch statistics and the model state is empty.
One Adam per player (``players_tx``), one D update per G update, the EMA of both generators.

Domains. Each step splits its prepared batch ``{"image": [B, H, W, C] in [-1, 1], "label"}``
with :func:`gmzoo.data.paired.unpaired_domains`: A = rows 0, 2, 4, ... unchanged, B = rows
1, 3, 5, ... mapped by the domain's transform T (``thin_vs_thick``: T = ``dilate``, a 3x3
max-pool; ``digits_vs_inverted``: T(x) = -x). No image is in both domains, so the model never
sees a pair (a, T(a)). The batch size must be even (half of it per domain).

Objectives (the paper's eq. 1-3 with the LSGAN losses of its Sec. 4; a in A, b in B):

    L_D = d(D_B(b), D_B(G(a))) + d(D_A(a), D_A(F(b)))                     (G, F frozen)
    L_G = w_adv [g(D_B(G(a))) + g(D_A(F(b)))]
          + lambda_cyc (E|F(G(a)) - a| + E|G(F(b)) - b|)                            (eq. 2)
          + lambda_id  (E|G(b) - b| + E|F(a) - a|)                           (Sec. 5.2)

with (d, g) = ``losses.gan.get(model.loss)``; for ``least_squares`` d = 1/2 E(D(x) - 1)^2 +
1/2 E D(fake)^2 (the paper's "divide the objective by 2 while optimizing D") and g =
1/2 E(D(fake) - 1)^2, half the official code's MSE, so the default ``adversarial_weight`` = 2
makes L_G the paper's with lambda_cyc = ``cycle_weight`` = 10.

``identity_weight`` defaults to the paper's 0.5 lambda_cyc = 5 (Sec. 5.2; the official code's
``lambda_identity=0.5``). Without it the generators are free to change what needs no change
(the paper's "tint"): on mnist5k thin -> thick, 1500 steps without the term thicken the strokes
but paint grey blotches into the black background, a worse PSNR against dilate(a) than the
identity's (9.7 vs 10.4 dB); with it 15.9 dB. For ``digits_vs_inverted`` set ``model.identity_weight=0``: there the identity map is
the worst answer and the term fights the translation.

Left out: the paper's history of 50 generated images that D also trains on (Shrivastava et al.
2017). It is state outside both players' params, updated by a random replacement every step;
here D sees the current generators' images only. Also left out: the linear learning-rate decay
of the second half of training (``optim.schedule=cosine`` is the spine's nearest choice).

Evaluation (``translate``): a test image a is taken as domain A; output G(a); target T(a), the
known map of a into B, which training never showed paired with a; baseline a unchanged. A
translation that learned T beats the identity on PSNR / SSIM against T(a).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from gmzoo.config import ConfigError, DataConfig, EvalConfig, ExperimentConfig, TrainConfig
from gmzoo.data import paired
from gmzoo.losses import gan as gan_losses
from gmzoo.losses import image2image as i2i_losses
from gmzoo.models import image2image as i2i_models
from gmzoo.nn.tree import param_dtype
from gmzoo.recipes.base import Recipe, Translation
from gmzoo.recipes.gan import GAN_ADAM, two_player_loss, two_player_step
from gmzoo.train.gan_step import DISCRIMINATOR, GENERATOR

# wasserstein is left out: it needs a Lipschitz critic (a gradient penalty), which CycleGAN has not.
LOSSES: tuple[str, ...] = ("least_squares", "non_saturating", "minimax", "hinge")


@dataclasses.dataclass(frozen=True)
class CycleGANConfig:
    """CycleGAN on two unpaired domains carved from one image data set. The generators'
    optimizer is ``optim``; the discriminators' is ``optim`` with ``d_learning_rate``."""

    name: str = "cyclegan"
    domains: str = "thin_vs_thick"  # thin_vs_thick | digits_vs_inverted
    features: int = 8  # F of G and F (ResnetGenerator widths F, 2F, 4F)
    num_blocks: int = 2  # residual blocks of G and F (paper: 6 at 128x128)
    d_features: int = 8  # F of D_A and D_B (PatchGAN widths F, 2F, ...)
    d_layers: int = 1  # stride-2 convs of the PatchGAN (1: 16x16 patches)
    loss: str = "least_squares"  # least_squares | non_saturating | minimax | hinge
    adversarial_weight: float = 2.0  # w_adv (2: the paper's E(D(G(a)) - 1)^2, see above)
    cycle_weight: float = 10.0  # lambda_cyc
    identity_weight: float = 5.0  # lambda_id (paper Sec. 5.2: 0.5 * lambda_cyc); 0: none
    d_learning_rate: float = 2e-4


@dataclasses.dataclass(frozen=True)
class CycleGANNets:
    """One architecture per role: G and F share ``generator``, D_A and D_B ``discriminator``
    (each with its own parameters in the train state)."""

    generator: nn.Module
    discriminator: nn.Module


# --- checks -------------------------------------------------------------------------------

def _check(config: ExperimentConfig, image_shape: tuple[int, int, int]) -> None:
    m, d, t = config.model, config.data, config.train
    shape = tuple(int(s) for s in image_shape)
    error = i2i_models.resnet_shape_error(shape)
    if error:
        raise ConfigError(f"{d.name} images {shape} do not fit model {m.name}: {error}")
    if m.domains not in paired.DOMAINS:
        raise ConfigError(f"model.domains={m.domains!r}; choose one of {', '.join(paired.DOMAINS)}")
    if m.loss not in LOSSES:
        raise ConfigError(f"model.loss={m.loss!r}; choose one of {', '.join(LOSSES)}")
    for field in ("features", "num_blocks", "d_features", "d_layers"):
        if getattr(m, field) < 1:
            raise ConfigError(f"model.{field}={getattr(m, field)} must be >= 1")
    if i2i_models.patch_output_size(min(shape[:2]), m.d_layers) < 1:
        fits = [k for k in range(1, 8) if i2i_models.patch_output_size(min(shape[:2]), k) >= 1]
        raise ConfigError(f"model.d_layers={m.d_layers}: the PatchGAN has no output on "
                          f"{shape[0]}x{shape[1]} images; use model.d_layers <= {max(fits)}")
    for field in ("adversarial_weight", "cycle_weight", "identity_weight"):
        if not getattr(m, field) >= 0:
            raise ConfigError(f"model.{field}={getattr(m, field)} must be >= 0")
    if not m.d_learning_rate > 0:
        raise ConfigError(f"model.d_learning_rate={m.d_learning_rate} must be > 0")
    if t.batch_size % 2:
        raise ConfigError(f"train.batch_size={t.batch_size} must be even: its even rows are "
                          "domain A and its odd rows domain B, half each")
    if d.binarize != "none" or d.scale != "symmetric":
        raise ConfigError(f"model {m.name} translates images in [-1, 1] (tanh): set "
                          "data.binarize=none data.scale=symmetric")


# --- networks -----------------------------------------------------------------------------

def _build(m: CycleGANConfig, image_shape, num_levels) -> CycleGANNets:
    del image_shape, num_levels  # both networks keep the input's size and channels
    return CycleGANNets(
        generator=i2i_models.ResnetGenerator(features=m.features, num_blocks=m.num_blocks),
        discriminator=i2i_models.CycleGANDiscriminator(features=m.d_features,
                                                       num_layers=m.d_layers))


def _init(nets: CycleGANNets, key: jax.Array, batch: dict) -> dict:
    """``{"params": {"generator": {"g_ab", "g_ba"}, "discriminator": {"d_a", "d_b"}}}``
    (instance norm only: no model state)."""
    keys = jax.random.split(key, 4)
    x = batch["image"]  # [B, H, W, C]
    g = {n: nets.generator.init(k, x)["params"] for n, k in zip(("g_ab", "g_ba"), keys[:2])}
    d = {n: nets.discriminator.init(k, x)["params"] for n, k in zip(("d_a", "d_b"), keys[2:])}
    return {"params": {GENERATOR: g, DISCRIMINATOR: d}}


def _apply(module: nn.Module, params: Any, x: jax.Array) -> jax.Array:
    """``module`` on ``x`` cast to the parameters' dtype (bfloat16 compute). Instance norm has
    no mode and no state, so this needs neither ``train`` nor ``gan.forward``'s state."""
    return module.apply({"params": params}, x.astype(param_dtype(params)))


def split_domains(m: CycleGANConfig, batch: dict) -> tuple[jax.Array, jax.Array]:
    """``(a [ceil(B/2), H, W, C], b [floor(B/2), H, W, C])``: the batch's even rows unchanged and
    its odd rows mapped into domain B (``paired.unpaired_domains``)."""
    images = batch["image"]  # [B, H, W, C]
    labels = batch.get("label", jnp.zeros(images.shape[:1], jnp.int32))
    a, b = paired.unpaired_domains(m.domains, images, labels)
    return a["image"], b["image"]


# --- objectives ---------------------------------------------------------------------------

def _objectives(m: CycleGANConfig, nets: CycleGANNets) -> tuple[Callable, Callable]:
    """``d_objective(d, g, batch, key, model_state)`` and ``g_objective(g, d, batch, key,
    model_state)``, each ``-> (loss, (metrics, model_state))`` (``gan_step``'s convention;
    the model state is empty and passes through)."""
    d_loss_of, g_loss_of = gan_losses.get(m.loss)
    G, D = nets.generator, nets.discriminator

    def d_objective(d, g, batch, key, model_state):
        """L_D = d(D_B(b), D_B(G(a))) + d(D_A(a), D_A(F(b))), the generators frozen."""
        del key
        a, b = split_domains(m, batch)
        g_of_a = jax.lax.stop_gradient(_apply(G, g["g_ab"], a)).astype(b.dtype)  # G(a)
        f_of_b = jax.lax.stop_gradient(_apply(G, g["g_ba"], b)).astype(a.dtype)  # F(b)
        real_b, fake_b = _apply(D, d["d_b"], b), _apply(D, d["d_b"], g_of_a)  # [B/2, h, w, 1]
        real_a, fake_a = _apply(D, d["d_a"], a), _apply(D, d["d_a"], f_of_b)  # [B/2, h, w, 1]
        loss_b, loss_a = d_loss_of(real_b, fake_b), d_loss_of(real_a, fake_a)
        mean = lambda s: jnp.mean(s.astype(jnp.float32))  # noqa: E731
        metrics = {"loss_a": loss_a, "loss_b": loss_b,  # scores: D's mean output
                   "real_score_a": mean(real_a), "fake_score_a": mean(fake_a),
                   "real_score_b": mean(real_b), "fake_score_b": mean(fake_b)}
        return loss_a + loss_b, (metrics, model_state)

    def g_objective(g, d, batch, key, model_state):
        """L_G = w_adv [g(D_B(G(a))) + g(D_A(F(b)))] + lambda_cyc L_cyc + lambda_id L_id, the
        discriminators frozen."""
        del key
        a, b = split_domains(m, batch)
        g_of_a, f_of_b = _apply(G, g["g_ab"], a), _apply(G, g["g_ba"], b)  # [B/2, H, W, C]
        adversarial = (g_loss_of(_apply(D, d["d_b"], g_of_a))
                       + g_loss_of(_apply(D, d["d_a"], f_of_b)))
        cycle = i2i_losses.cycle_consistency_loss(
            a, _apply(G, g["g_ba"], g_of_a), b, _apply(G, g["g_ab"], f_of_b))  # eq. 2
        loss = m.adversarial_weight * adversarial + m.cycle_weight * cycle
        metrics = {"adversarial": adversarial, "cycle": cycle}
        if m.identity_weight > 0:
            identity = i2i_losses.identity_loss(a, _apply(G, g["g_ba"], a),
                                                b, _apply(G, g["g_ab"], b))
            loss = loss + m.identity_weight * identity
            metrics["identity"] = identity
        return loss, (metrics, model_state)

    return d_objective, g_objective


def _loss(m: CycleGANConfig, nets: CycleGANNets) -> Callable:
    """Held-out ``loss_fn(params, batch, key) -> (L_G, metrics)``: both players' objectives on a
    test batch (its even rows domain A, its odd rows domain B, as in training)."""
    return two_player_loss(*_objectives(m, nets))


def _train_step(config: ExperimentConfig, nets, **kw):
    """The spine's ``train_step`` hook (``gan.two_player_step``, one D update per step)."""
    m = config.model
    d_objective, g_objective = _objectives(m, nets)
    return two_player_step(config, d_objective, g_objective, d_learning_rate=m.d_learning_rate,
                           **kw)


def _translate(m: CycleGANConfig, nets: CycleGANNets, *, sampling=None) -> Callable:
    """``translate(params, batch, key) -> Translation``: every image a of the batch taken as
    domain A; output G(a), target T(a) (the known map into B), baseline a. ``key`` is unused
    (G is deterministic)."""
    to_b = paired.domain_map(m.domains)

    def translate(params, batch, key):
        del key
        a = batch["image"]  # [B, H, W, C]
        output = _apply(nets.generator, params[GENERATOR]["g_ab"], a).astype(jnp.float32)
        return Translation(source=a, output=output, target=to_b(a), baseline=a)

    return translate


# --- defaults -----------------------------------------------------------------------------

_DATA = DataConfig(name="mnist5k", scale="symmetric")
_TRAIN = TrainConfig(steps=1000, batch_size=16, log_every=100, eval_every=500, sample_every=500,
                     checkpoint_every=500)


def _default() -> ExperimentConfig:
    return ExperimentConfig(model=CycleGANConfig(), data=_DATA, optim=GAN_ADAM, train=_TRAIN,
                            eval=EvalConfig(num_samples=1000, batch_size=100))


RECIPES: tuple[Recipe, ...] = (
    Recipe(name="cyclegan",
           description="CycleGAN: unpaired A <-> B with two ResNet generators, two PatchGANs, "
                       "LSGAN + 10 * cycle + 5 * identity loss (mnist5k thin -> thick strokes)",
           config_cls=CycleGANConfig, default=_default, build=_build, check=_check, init=_init,
           loss=_loss, sampler=None, train_step=_train_step, translate=_translate,
           baseline="the input unchanged (identity)"),
)

# Tiny variant (tests, smoke runs): the contract test over the model table trains it so.
RECIPES = tuple(dataclasses.replace(r, tiny=("model.features=2", "model.num_blocks=1",
                                             "model.d_features=2")) for r in RECIPES)
