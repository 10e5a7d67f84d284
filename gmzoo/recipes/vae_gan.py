"""The ``vae_gan`` recipe: a VAE whose reconstruction error is measured in a GAN discriminator's
feature space (Larsen et al. 2016, "Autoencoding beyond pixels using a learned similarity
metric", Algorithm 1), on image data in [-1, 1].

Networks (no new architecture): Enc and Dec are the spine's conv VAE (:class:`gmzoo.models.vae.VAE`,
``architecture="conv"``, ``hidden=model.widths``): Enc = its ``encoder`` + ``posterior``
(q(z|x) = N(mean, diag exp(log_var))), Dec(z) = tanh(raw) on its decoder's one raw output per
pixel (the P = 1 head, named "bernoulli" in gmzoo.nn.heads; no Bernoulli likelihood is used).
Dis is :class:`gmzoo.models.gan.DCGANDiscriminator`; Dis_l(x) is its layer-l hidden activation
(``model.feature_layer``: 2 = phi(x), the features it sows under ``intermediates/features``;
1 = LeakyReLU of its first conv, captured with ``capture_intermediates``).

The three terms (Larsen et al. 2016, Sec. 2 and Alg. 1; means over the batch):

    L_prior = KL(q(z|x) || N(0, I))                                     closed form, gaussian_kl
    L_llike = -E_q log N(Dis_l(x); Dis_l(Dec(z)), I)                    z ~ q(z|x)
            = 1/2 ||Dis_l(x) - Dis_l(Dec(z))||^2 + const                (the constant is dropped)
    L_GAN   = log Dis(x) + log(1 - Dis(Dec(z))) + log(1 - Dis(Dec(z_p)))   z_p ~ N(0, I)

Updates: Enc <- -grad (L_prior + L_llike); Dec <- -grad (gamma L_llike - L_GAN), with Dec's GAN
term in its non-saturating form -log Dis(Dec(z)) - log Dis(Dec(z_p)); Dis <- +grad L_GAN.

Players of :func:`gmzoo.train.gan_step.make_gan_train_step` (as in gmzoo.recipes.gan):
"generator" = the VAE's params {encoder, posterior, decoder} (one Adam, ``optim``),
"discriminator" = Dis (``model.d_learning_rate``). The step takes one loss per player, so the
generator's loss routes the gradients (see :func:`generator_terms`):

    L_G = kl_weight * L_prior + L_llike[Dec params: gradient x gamma] + L_GAN^NS[z stopped]

    grad_Enc L_G = kl_weight * grad_Enc L_prior + grad_Enc L_llike         (no GAN term, no gamma)
    grad_Dec L_G = gamma * grad_Dec L_llike + grad_Dec L_GAN^NS            (no KL term)

- the GAN term decodes stop_gradient(z) (and z_p, which no parameter produces), so it sends no
  gradient into Enc;
- L_llike decodes z with Dec's params passed through ``losses.vae_gan.scale_gradient(., gamma)``,
  the identity sg(p) + gamma (p - sg(p)): the forward value is exactly p, the gradient reaching
  Dec's params is multiplied by gamma, and the gradient reaching z (hence Enc) is not.
The reported loss (``g_loss``) is the forward value kl_weight L_prior + L_llike + L_GAN^NS
(gamma changes gradients only).

Departures from Alg. 1, all from the spine's GAN step: Dis is updated first and Enc/Dec then
step against the updated Dis (Alg. 1 updates all three from the same parameters); each player
draws its own z ~ q(z|x) and z_p (Alg. 1 shares one draw); the generator's EMA (``optim
.ema_decay``, over Enc and Dec) is what the sampler and evaluation read. Dis runs in train mode
(batch statistics) with the real, reconstructed and prior-sampled batches normalised as separate
batches, and keeps the running averages of its own update (gmzoo.recipes.gan's rule); identical
inputs give identical features, so L_llike is 0 when Dec reproduces x exactly.

Sampling (``gmzoo sample`` / ``evaluate``): x = Dec(z), z ~ N(0, I). There is no likelihood
(L_llike is a density of Dis's features, not of x), so ``evaluate`` reports FD / KID only.

Defaults (``gmzoo train vae_gan``): digits 8x8 in [-1, 1], 3000 steps of batch 64 (as dcgan),
latent_dim 16, VAE widths (32, 64), Dis F = 32, Adam(b1 = 0.5) at 5e-4 for Enc/Dec and 2e-4 for
Dis. gamma: the paper's code uses 1e-6 on 64x64 faces, where L_llike sums a large feature map;
only gamma's effect on Dec matters (Enc never sees it), and Adam makes it a ratio of Dec's two
gradients. Here Dis_2 has (H/4)(W/4)2F = 256 features on 8x8 digits; L_llike ends near 15 and
L_GAN^NS near 2.4, so gamma = 0.03 puts the two terms of Dec's loss at one order. FD on digits
(held-out reference 2.37) over default runs with other gammas: 1e-3: 4.19; 1e-2: 3.26, 3.35
(seeds 0, 1); 3e-2: 2.76, 3.81; 1e-1: 3.56. Flat between 1e-2 and 1e-1; 3e-2 is its middle.
With latent_dim 32 and Enc/Dec at 2e-4: 1e-2: 6.1, 1e-1: 8.0, 1: 11.1.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from gmzoo.config import ConfigError, ExperimentConfig, OptimConfig
from gmzoo.losses import vae_gan as vae_gan_losses
from gmzoo.losses.gaussian import gaussian_kl, reparameterize
from gmzoo.models import gan as gan_models
from gmzoo.models import vae as vae_models
from gmzoo.nn.tree import param_dtype
from gmzoo.recipes.base import Recipe
from gmzoo.recipes.gan import experiment, two_player_loss, two_player_step
from gmzoo.train.gan_step import DISCRIMINATOR, GENERATOR

ENCODER_PARAMS: tuple[str, ...] = ("encoder", "posterior")  # Enc's entries of the VAE params
DECODER_PARAMS: tuple[str, ...] = ("decoder",)  # Dec's entry
FEATURE_LAYERS: tuple[int, ...] = (1, 2)  # Dis's hidden layers (DCGAN discriminator)


@dataclasses.dataclass(frozen=True)
class VAEGANConfig:
    """VAE/GAN (Larsen et al. 2016). Enc/Dec learn with ``optim`` (``optim.learning_rate``),
    Dis with ``optim`` at ``d_learning_rate``."""

    name: str = "vae_gan"
    latent_dim: int = 16
    widths: tuple[int, ...] = (32, 64)  # channels of the VAE's stride-2 conv stages
    features: int = 32  # F: Dis's widths F and 2F
    batch_norm: bool = True  # batch norm in Dis (on its second conv, as DCGAN)
    feature_layer: int = 2  # l of Dis_l in L_llike: 1 (first conv) or 2 (phi, before the logit)
    gamma: float = 0.03  # weight of L_llike against L_GAN in Dec's update only
    kl_weight: float = 1.0  # weight of L_prior in Enc's update (1: the paper)
    d_learning_rate: float = 2e-4


@dataclasses.dataclass(frozen=True)
class VAEGANNets:
    """Enc + Dec (one VAE module, the "generator" player) and Dis (the "discriminator")."""

    vae: nn.Module
    discriminator: nn.Module
    latent_dim: int
    feature_layer: int


# --- checks -------------------------------------------------------------------------------

def _check(config: ExperimentConfig, image_shape: tuple[int, int, int]) -> None:
    m, d = config.model, config.data
    shape = tuple(int(s) for s in image_shape)
    if len(m.widths) < 1 or any(w < 1 for w in m.widths):
        raise ConfigError(f"model.widths={tuple(m.widths)} must be one or more positive channel "
                          "counts (one per stride-2 conv stage of Enc and Dec), e.g. 32,64")
    for what, error in (("Enc/Dec", vae_models.image_shape_error(shape, "conv", tuple(m.widths))),
                        ("Dis", gan_models.dcgan_image_shape_error(shape))):
        if error:
            raise ConfigError(f"{d.name} images {shape} do not fit model {m.name} ({what}): "
                              f"{error}")
    for field in ("latent_dim", "features"):
        if getattr(m, field) < 1:
            raise ConfigError(f"model.{field}={getattr(m, field)} must be >= 1")
    if m.feature_layer not in FEATURE_LAYERS:
        raise ConfigError(f"model.feature_layer={m.feature_layer}: choose one of Dis's hidden "
                          f"layers {', '.join(map(str, FEATURE_LAYERS))} (2: phi)")
    if not m.gamma >= 0:
        raise ConfigError(f"model.gamma={m.gamma} must be >= 0 (L_llike's weight in Dec's update)")
    if not m.kl_weight >= 0:
        raise ConfigError(f"model.kl_weight={m.kl_weight} must be >= 0")
    if not m.d_learning_rate > 0:
        raise ConfigError(f"model.d_learning_rate={m.d_learning_rate} must be > 0")
    if d.binarize != "none" or d.scale != "symmetric":
        raise ConfigError(f"model {m.name} generates images in [-1, 1] (tanh): set "
                          "data.binarize=none data.scale=symmetric")


# --- networks -----------------------------------------------------------------------------

def _build(m: VAEGANConfig, image_shape, num_levels) -> VAEGANNets:
    shape = tuple(int(s) for s in image_shape)
    vae = vae_models.VAE(image_shape=shape, latent_dim=m.latent_dim, likelihood="bernoulli",
                         architecture="conv", hidden=tuple(m.widths))  # P = 1 raw output / pixel
    dis = gan_models.DCGANDiscriminator(image_shape=shape, features=m.features,
                                        batch_norm=m.batch_norm)
    return VAEGANNets(vae, dis, m.latent_dim, m.feature_layer)


def _init(nets: VAEGANNets, key: jax.Array, batch: dict) -> dict:
    """``{"params": {"generator": VAE params, "discriminator": Dis params}[, "discriminator":
    {"batch_stats"}]}`` (the spine keeps everything but ``params`` as the model state)."""
    vae_key, sample_key, d_key = jax.random.split(key, 3)
    x = batch["image"]  # [B, H, W, C]
    g = nets.vae.init(vae_key, x, sample_key)["params"]
    d_vars = nets.discriminator.init(d_key, x)
    variables: dict[str, Any] = {"params": {GENERATOR: g, DISCRIMINATOR: d_vars["params"]}}
    if "batch_stats" in d_vars:  # (not "intermediates": Dis sows its features there)
        variables[DISCRIMINATOR] = {"batch_stats": d_vars["batch_stats"]}
    return variables


def encode(nets: VAEGANNets, g: Any, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Enc: ``x [B, H, W, C] -> (mean, log_var)`` of q(z|x), each ``[B, Z]``."""
    return nets.vae.apply({"params": g}, x.astype(param_dtype(g)), method="encode")


def decode(nets: VAEGANNets, g: Any, z: jax.Array) -> jax.Array:
    """Dec: ``z [B, Z] -> x [B, H, W, C]`` in [-1, 1] (tanh of the decoder's raw output)."""
    raw = nets.vae.apply({"params": g}, z.astype(param_dtype(g)), method="decode")  # [B, H, W, C]
    return jnp.tanh(raw)


def discriminate(nets: VAEGANNets, d: Any, state: dict,
                 x: jax.Array) -> tuple[jax.Array, jax.Array, dict]:
    """Dis in train mode on ``{"params": d, **state}``: ``(logits [B], Dis_l(x) [B, ...], new
    state)``. Layer 2 is the sown phi(x); layer 1 is LeakyReLU(0.2) of the first conv's output
    (captured), i.e. the activation that layer passes on."""
    layer = nets.feature_layer
    capture = (lambda mdl, method: mdl.name == "conv_0" and method == "__call__") if layer == 1 \
        else False
    logits, mutated = nets.discriminator.apply(
        {"params": d, **state}, x.astype(param_dtype(d)), train=True,
        mutable=["batch_stats", "intermediates"], capture_intermediates=capture)
    inter = mutated["intermediates"]
    if layer == 1:
        features = nn.leaky_relu(inter["conv_0"]["__call__"][0], gan_models.LEAKY_SLOPE)
    else:
        features = inter["features"][0]  # [B, H/4 * W/4 * 2F]
    new_state = {"batch_stats": mutated["batch_stats"]} if "batch_stats" in mutated else {}
    return logits, features, new_state


# --- objective terms (the losses themselves: gmzoo.losses.vae_gan) -------------------------

def generator_terms(nets: VAEGANNets, g: Any, d: Any, d_state: dict, x: jax.Array,
                    key: jax.Array, *, gamma: float) -> tuple[dict, dict]:
    """The generator's three terms with their gradients routed (module docstring):
    ``({"prior", "llike", "gan"} scalars, metrics)``.

    - "prior" = mean_b KL(q(z|x_b) || N(0, I)): Enc only.
    - "llike" = mean_b 1/2 ||Dis_l(x_b) - Dis_l(Dec(z_b))||^2, z = reparameterize(q_key, ...):
      Enc through z (x 1), Dec through its params (x gamma).
    - "gan" = -E log Dis(Dec(sg(z))) - E log Dis(Dec(z_p)), z_p ~ N(0, I) from p_key: Dec only.
    ``q_key, p_key = jax.random.split(key)``; Dis is frozen (its params are not differentiated
    here) and its new batch statistics are discarded.
    """
    q_key, p_key = jax.random.split(key)
    mean, log_var = encode(nets, g, x)  # [B, Z] each
    z = reparameterize(q_key, mean, log_var)  # [B, Z]
    z_p = jax.random.normal(p_key, z.shape, z.dtype)  # [B, Z]
    prior = jnp.mean(gaussian_kl(mean.astype(jnp.float32), log_var.astype(jnp.float32)))

    g_llike = {**g, **{k: vae_gan_losses.scale_gradient(g[k], gamma) for k in DECODER_PARAMS}}
    x_tilde = decode(nets, g_llike, z)  # [B, H, W, C]
    _, real_features, _ = discriminate(nets, d, d_state, x)
    _, fake_features, _ = discriminate(nets, d, d_state, x_tilde)
    llike = jnp.mean(vae_gan_losses.feature_loss(jax.lax.stop_gradient(real_features),
                                                 fake_features))

    fakes = decode(nets, g, jnp.concatenate([jax.lax.stop_gradient(z), z_p]))  # [2B, H, W, C]
    x_recon, x_prior = jnp.split(fakes, 2)  # x_recon == x_tilde in value
    recon_logits, _, _ = discriminate(nets, d, d_state, x_recon)  # [B]
    prior_logits, _, _ = discriminate(nets, d, d_state, x_prior)  # [B]
    gan = vae_gan_losses.decoder_gan_loss(recon_logits, prior_logits)

    metrics = {"recon_score": jnp.mean(recon_logits.astype(jnp.float32)),
               "prior_score": jnp.mean(prior_logits.astype(jnp.float32)),
               "pixel_mse": jnp.mean(jnp.square(x_tilde.astype(jnp.float32) - x))}
    return {"prior": prior, "llike": llike, "gan": gan}, metrics


# --- objectives ---------------------------------------------------------------------------

def _objectives(m: VAEGANConfig, nets: VAEGANNets) -> tuple[Callable, Callable]:
    """``d_objective(d, g, batch, key, model_state)`` and ``g_objective(g, d, batch, key,
    model_state)``, each ``-> (loss, (metrics, new_model_state))`` (``gan_step``'s convention)."""

    def d_objective(d, g, batch, key, model_state):
        """-L_GAN with Enc and Dec frozen (Alg. 1's Dis update)."""
        q_key, p_key = jax.random.split(key)
        x = batch["image"]  # [B, H, W, C]
        mean, log_var = encode(nets, g, x)
        z = reparameterize(q_key, mean, log_var)  # [B, Z]
        z_p = jax.random.normal(p_key, z.shape, z.dtype)  # [B, Z]
        fakes = jax.lax.stop_gradient(decode(nets, g, jnp.concatenate([z, z_p])))  # [2B, ...]
        x_recon, x_prior = jnp.split(fakes.astype(x.dtype), 2)
        d_state = model_state.get(DISCRIMINATOR, {})
        real_logits, _, d_state = discriminate(nets, d, d_state, x)  # [B]
        recon_logits, _, d_state = discriminate(nets, d, d_state, x_recon)  # [B]
        prior_logits, _, d_state = discriminate(nets, d, d_state, x_prior)  # [B]
        loss = vae_gan_losses.discriminator_loss(real_logits, recon_logits, prior_logits)
        metrics = {"real_score": jnp.mean(real_logits.astype(jnp.float32)),
                   "recon_score": jnp.mean(recon_logits.astype(jnp.float32)),
                   "prior_score": jnp.mean(prior_logits.astype(jnp.float32))}
        new_state = dict(model_state)
        if DISCRIMINATOR in model_state:
            new_state[DISCRIMINATOR] = d_state
        return loss, (metrics, new_state)

    def g_objective(g, d, batch, key, model_state):
        """kl_weight L_prior + L_llike + L_GAN^NS, gradients routed (Alg. 1's Enc and Dec
        updates; see ``generator_terms``)."""
        terms, metrics = generator_terms(nets, g, d, model_state.get(DISCRIMINATOR, {}),
                                         batch["image"], key, gamma=m.gamma)
        loss = m.kl_weight * terms["prior"] + terms["llike"] + terms["gan"]
        return loss, ({"kl": terms["prior"], "feature_loss": terms["llike"],
                       "gan_loss": terms["gan"], **metrics}, model_state)

    return d_objective, g_objective


def _loss(m: VAEGANConfig, nets: VAEGANNets) -> Callable:
    """Held-out ``loss_fn(params, batch, key) -> (g_loss, metrics)``: both players' losses on a
    test batch, Dis in train mode with the batch's own statistics (as gmzoo.recipes.gan)."""
    return two_player_loss(*_objectives(m, nets))


def _train_step(config: ExperimentConfig, nets, **kw):
    """The spine's ``train_step`` hook (``gan.two_player_step``, one D update per step)."""
    m = config.model
    d_objective, g_objective = _objectives(m, nets)
    return two_player_step(config, d_objective, g_objective, d_learning_rate=m.d_learning_rate,
                           **kw)


def _sampler(m: VAEGANConfig, nets: VAEGANNets, *, mean: bool = True, sampling=None):
    """``sample(params, key, n) -> [n, H, W, C]`` in [-1, 1]: x = Dec(z), z ~ N(0, I). ``mean``
    does not apply (Dec is deterministic given z; Dec has no batch norm)."""
    del mean, sampling

    def sample(params, key, n):
        z = jax.random.normal(key, (n, nets.latent_dim))  # [n, Z]
        return decode(nets, params[GENERATOR], z).astype(jnp.float32)  # [n, H, W, C]

    return sample


# --- defaults -----------------------------------------------------------------------------

# gmzoo.recipes.gan's defaults (digits, 3000 steps of 64, FD/KID on 1000 samples), Enc/Dec at 5e-4.
_OPTIM = OptimConfig(optimizer="adam", learning_rate=5e-4, b1=0.5, b2=0.999, ema_decay=0.999)

RECIPES: tuple[Recipe, ...] = (
    Recipe(name="vae_gan",
           description="VAE/GAN: conv VAE with a learned (discriminator-feature) similarity "
                       "metric + GAN loss (digits in [-1, 1])",
           config_cls=VAEGANConfig, default=experiment(VAEGANConfig(), optim=_OPTIM), build=_build,
           check=_check, init=_init, loss=_loss, sampler=_sampler, train_step=_train_step),
)

# Tiny variant (tests, smoke runs): the contract test over the model table trains it so.
RECIPES = tuple(dataclasses.replace(r, tiny=("model.latent_dim=4", "model.widths=4,8",
                                             "model.features=4")) for r in RECIPES)
