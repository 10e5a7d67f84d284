"""GAN generators and discriminators (architectures only; losses in gmzoo.losses.gan, the
two-player step in gmzoo.train.gan_step).

One call convention for every player, so a loss closes over any pair:

    generator      apply(vars, z [B, Z], y=None, *, train=False) -> x [B, *out_shape]
    discriminator  apply(vars, x [B, *shape], y=None, *, train=False) -> logits [B]

`y` are integer class labels `[B]`, required when `num_classes > 0` and refused when it is 0.
`train=True` puts batch norm in batch-statistics mode and advances spectral norm's power
iteration; both keep their state in the `batch_stats` collection, so pass
`mutable=["batch_stats"]` with `train=True`.

- `MLPGenerator` / `MLPDiscriminator`: dense nets for 2-D toys (gmzoo.data.toys) and small
  flattened images.
- `DCGANGenerator` / `DCGANDiscriminator` (Radford et al. 2016) for `(H, W, C)` images with H
  and W divisible by 4 (two stride-2 stages; 8x8 digits from a 2x2 map, 28x28 from 7x7):

      G: z -> Dense(H/4 W/4 2F) -> BN, ReLU -> UpConv(F) -> BN, ReLU -> UpConv(C) -> tanh
      D: x -> Conv4x4/2(F) -> LReLU(0.2) -> Conv4x4/2(2F) -> BN, LReLU(0.2) -> flatten = phi(x)
           -> Dense(1)

  (fractional-strided convs are `gmzoo.nn.conv.UpConv`, 3x3; no fully-connected hidden layers;
  no BN on G's output nor D's input layer). Shapes are checked at construction.
- Spectral normalisation (Miyato et al. 2018): `spectral_norm=True` on a discriminator wraps
  every weight (convs or dense layers, the logit layer, label embeddings) in
  `flax.linen.SpectralNorm`, W / sigma(W) with sigma from one power iteration per call on W
  reshaped to `[fan_in, fan_out]`, and drops batch norm.
- Conditioning on labels (`num_classes > 0`): the generator concatenates a learned label
  embedding to z (Mirza & Osindero 2014); a discriminator either concatenates it to its input
  (`conditioning="concat"`, broadcast over H, W as extra channels for images) or uses the
  projection discriminator (Miyato & Koyama 2018, eq. 3)

      logit(x, y) = psi(phi(x)) + <embed(y), phi(x)>,

  with phi(x) the features before the final linear psi. Discriminators `sow` phi(x) as
  `intermediates/features`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from gmzoo.nn.tree import param_count
from gmzoo.nn.conv import UpConv

__all__ = [
    "CONDITIONINGS", "DCGANDiscriminator", "DCGANGenerator", "MLPDiscriminator", "MLPGenerator",
    "SNDCGANDiscriminator", "TinyDCGANDiscriminator", "TinyDCGANGenerator", "ToyDiscriminator",
    "ToyGenerator", "dcgan_image_shape_error", "param_count", "validate_dcgan_image_shape",
]

CONDITIONINGS: tuple[str, ...] = ("concat", "projection")
LEAKY_SLOPE = 0.2  # LeakyReLU slope of every discriminator (Radford et al. 2016)
DCGAN_STAGES = 2  # stride-2 stages of the DCGAN generator and discriminator


def dcgan_image_shape_error(image_shape: tuple[int, ...]) -> str | None:
    """Why the DCGAN layer plan cannot make / take `image_shape`, or None if it can."""
    if len(image_shape) != 3 or any(int(d) < 1 for d in image_shape):
        return f"DCGAN image_shape must be (H, W, C) with positive sizes, got {tuple(image_shape)}"
    factor = 2**DCGAN_STAGES
    height, width, channels = image_shape
    if height % factor or width % factor:
        return (f"DCGAN takes H and W divisible by {factor} ({DCGAN_STAGES} stride-2 stages: 8x8 "
                f"from a 2x2 map, 28x28 from 7x7, 32x32 from 8x8), got {height}x{width}x{channels}")
    return None


def validate_dcgan_image_shape(image_shape: tuple[int, ...]) -> None:
    """Raise a one-line ValueError if the DCGAN plan cannot take `image_shape`."""
    error = dcgan_image_shape_error(tuple(image_shape))
    if error is not None:
        raise ValueError(error)


def _check_common(module: nn.Module) -> None:
    """Validate the conditioning fields shared by every module here (from __post_init__)."""
    name = type(module).__name__
    if module.num_classes < 0 or module.label_features < 1:
        raise ValueError(f"{name}: num_classes must be >= 0 (0 = unconditional) and "
                         f"label_features >= 1, got {module.num_classes}, {module.label_features}")
    conditioning = getattr(module, "conditioning", "concat")
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"{name}: conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")


def _check_labels(name: str, num_classes: int, y: jax.Array | None, batch: int) -> None:
    """Labels are refused by an unconditional module and required by a conditional one."""
    if num_classes == 0 and y is not None:
        raise ValueError(f"{name} is unconditional (num_classes=0) but got labels y; "
                         f"build it with num_classes > 0 for a conditional GAN")
    if num_classes > 0:
        if y is None:
            raise ValueError(f"{name} is conditional (num_classes={num_classes}): pass integer "
                             f"labels y of shape [{batch}]")
        if y.shape != (batch,) or not jnp.issubdtype(y.dtype, jnp.integer):
            raise ValueError(f"{name}: labels y must be integers of shape [{batch}] in "
                             f"0..{num_classes - 1}, got {y.dtype} {tuple(y.shape)}")


def _layer(layer: nn.Module, spectral_norm: bool, update_stats: bool) -> Callable[..., jax.Array]:
    """`layer`, or `layer` with spectrally normalised weights (its u, sigma in `batch_stats`
    under `<name>_sn`; its params stay where they are without spectral norm)."""
    if not spectral_norm:
        return layer
    wrapped = nn.SpectralNorm(layer, name=f"{layer.name}_sn")
    return functools.partial(wrapped, update_stats=update_stats)


def _label_embedding(y: jax.Array, num_classes: int, features: int, name: str,
                     spectral_norm: bool = False, update_stats: bool = False) -> jax.Array:
    """`y [B] -> [B, features]` learned embedding (called inside a compact method)."""
    return _layer(nn.Embed(num_classes, features, name=name), spectral_norm, update_stats)(y)


def _discriminator_head(module: nn.Module, phi: jax.Array, y: jax.Array | None,
                        update_stats: bool) -> jax.Array:
    """psi(phi) [+ <embed(y), phi> for the projection discriminator]: `[B, F] -> [B]`."""
    module.sow("intermediates", "features", phi)
    sn = module.spectral_norm
    logit = _layer(nn.Dense(1, name="logit"), sn, update_stats)(phi)[:, 0]  # [B]
    if module.num_classes > 0 and module.conditioning == "projection":
        embed = _label_embedding(y, module.num_classes, phi.shape[-1], "projection", sn,
                                 update_stats)  # [B, F]
        logit = logit + jnp.sum(embed * phi, axis=-1)
    return logit


# ---- dense players for toys and flattened images ----------------------------------------------

class MLPGenerator(nn.Module):
    """`z [B, Z] (, y) -> [B, *out_shape]`: ReLU dense layers `hidden`, then a dense output with
    `output_activation` (None: unbounded, for toys; `nn.tanh` for images in [-1, 1])."""

    out_shape: tuple[int, ...]
    hidden: tuple[int, ...] = (128, 128)
    output_activation: Callable[[jax.Array], jax.Array] | None = None
    num_classes: int = 0
    label_features: int = 16

    def __post_init__(self) -> None:
        if len(self.out_shape) < 1 or any(int(d) < 1 for d in self.out_shape):
            raise ValueError(f"MLPGenerator: out_shape must be positive sizes, got {self.out_shape}")
        _check_common(self)
        super().__post_init__()

    @nn.compact
    def __call__(self, z: jax.Array, y: jax.Array | None = None, *, train: bool = False) -> jax.Array:
        del train  # no batch statistics
        _check_labels("MLPGenerator", self.num_classes, y, z.shape[0])
        h = z
        if self.num_classes > 0:
            h = jnp.concatenate([z, _label_embedding(y, self.num_classes, self.label_features,
                                                     "label_embed")], axis=-1)  # [B, Z + E]
        for i, width in enumerate(self.hidden):
            h = nn.relu(nn.Dense(width, name=f"dense_{i}")(h))
        out = nn.Dense(math.prod(self.out_shape), name="out")(h)
        if self.output_activation is not None:
            out = self.output_activation(out)
        return out.reshape(z.shape[0], *self.out_shape)  # [B, *out_shape]


class MLPDiscriminator(nn.Module):
    """`x [B, ...] (, y) -> logits [B]`: flatten, LeakyReLU(0.2) dense layers `hidden` = phi(x),
    then the final linear (plus the projection term if conditional)."""

    hidden: tuple[int, ...] = (128, 128)
    spectral_norm: bool = False
    num_classes: int = 0
    conditioning: str = "projection"
    label_features: int = 16

    def __post_init__(self) -> None:
        if len(self.hidden) < 1:
            raise ValueError(f"MLPDiscriminator needs at least one hidden layer, got {self.hidden}")
        _check_common(self)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array | None = None, *, train: bool = False) -> jax.Array:
        _check_labels("MLPDiscriminator", self.num_classes, y, x.shape[0])
        h = x.reshape(x.shape[0], -1)  # [B, D]
        if self.num_classes > 0 and self.conditioning == "concat":
            embed = _label_embedding(y, self.num_classes, self.label_features, "label_embed",
                                     self.spectral_norm, train)
            h = jnp.concatenate([h, embed], axis=-1)  # [B, D + E]
        for i, width in enumerate(self.hidden):
            h = _layer(nn.Dense(width, name=f"dense_{i}"), self.spectral_norm, train)(h)
            h = nn.leaky_relu(h, LEAKY_SLOPE)
        return _discriminator_head(self, h, y, train)  # [B]


# ---- DCGAN (Radford et al. 2016) ----------------------------------------------------------------

class DCGANGenerator(nn.Module):
    """`z [B, latent_dim] (, y) -> x [B, H, W, C]` in [-1, 1] (plan in the module docstring).

    `features` F is the width of the last hidden map; the first map has 2F channels. Batch norm
    (per channel, momentum `bn_momentum`) follows every layer but the output layer; the dense
    projection before it has no bias (`UpConv` always has one, which BN cancels).
    """

    image_shape: tuple[int, int, int]
    latent_dim: int = 100
    features: int = 64
    num_classes: int = 0
    label_features: int = 16
    bn_momentum: float = 0.9

    def __post_init__(self) -> None:
        validate_dcgan_image_shape(self.image_shape)
        if self.latent_dim < 1 or self.features < 1:
            raise ValueError(f"DCGANGenerator: latent_dim and features must be positive, got "
                             f"{self.latent_dim}, {self.features}")
        _check_common(self)
        super().__post_init__()

    @nn.compact
    def __call__(self, z: jax.Array, y: jax.Array | None = None, *, train: bool = False) -> jax.Array:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"DCGANGenerator: z must be [B, {self.latent_dim}], got {tuple(z.shape)}")
        _check_labels("DCGANGenerator", self.num_classes, y, z.shape[0])
        height, width, channels = self.image_shape
        norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                                 momentum=self.bn_momentum)
        h = z
        if self.num_classes > 0:
            h = jnp.concatenate([z, _label_embedding(y, self.num_classes, self.label_features,
                                                     "label_embed")], axis=-1)  # [B, Z + E]
        h0, w0, f0 = height // 4, width // 4, 2 * self.features
        h = nn.Dense(h0 * w0 * f0, use_bias=False, name="project")(h)
        h = h.reshape(z.shape[0], h0, w0, f0)  # [B, H/4, W/4, 2F]
        h = nn.relu(norm(name="bn_project")(h))
        h = nn.relu(norm(name="bn_0")(UpConv(self.features, name="deconv_0")(h)))  # [B, H/2, W/2, F]
        return jnp.tanh(UpConv(channels, name="deconv_1")(h))  # [B, H, W, C]


class DCGANDiscriminator(nn.Module):
    """`x [B, H, W, C] (, y) -> logits [B]` (plan in the module docstring): stride-2 4x4 convs
    with F and 2F channels, LeakyReLU(0.2), batch norm on the second (`batch_norm`, ignored
    with `spectral_norm`, which replaces it), then one linear map of the flattened features."""

    image_shape: tuple[int, int, int]
    features: int = 64
    batch_norm: bool = True
    spectral_norm: bool = False
    num_classes: int = 0
    conditioning: str = "projection"
    label_features: int = 16
    bn_momentum: float = 0.9

    def __post_init__(self) -> None:
        validate_dcgan_image_shape(self.image_shape)
        if self.features < 1:
            raise ValueError(f"DCGANDiscriminator: features must be positive, got {self.features}")
        _check_common(self)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array | None = None, *, train: bool = False) -> jax.Array:
        if x.shape[1:] != tuple(self.image_shape):
            raise ValueError(f"DCGANDiscriminator built for images {tuple(self.image_shape)}, got "
                             f"a batch of shape {tuple(x.shape)}")
        _check_labels("DCGANDiscriminator", self.num_classes, y, x.shape[0])
        sn, use_bn = self.spectral_norm, self.batch_norm and not self.spectral_norm
        h = x
        if self.num_classes > 0 and self.conditioning == "concat":
            embed = _label_embedding(y, self.num_classes, self.label_features, "label_embed", sn,
                                     train)  # [B, E]
            embed = jnp.broadcast_to(embed[:, None, None, :], (*x.shape[:3], embed.shape[-1]))
            h = jnp.concatenate([x, embed.astype(x.dtype)], axis=-1)  # [B, H, W, C + E]
        for i, feats in enumerate((self.features, 2 * self.features)):
            norm_here = use_bn and i > 0  # no batch norm on the input layer
            conv = nn.Conv(feats, (4, 4), strides=(2, 2), padding="SAME", use_bias=not norm_here,
                           name=f"conv_{i}")
            h = _layer(conv, sn, train)(h)  # [B, H/2^(i+1), W/2^(i+1), feats]
            if norm_here:
                h = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                                 name=f"bn_{i}")(h)
            h = nn.leaky_relu(h, LEAKY_SLOPE)
        phi = h.reshape(x.shape[0], -1)  # [B, H/4 * W/4 * 2F]
        return _discriminator_head(self, phi, y, train)  # [B]


# Variants (callers pass image_shape; conditional ones also num_classes).
ToyGenerator = functools.partial(MLPGenerator, out_shape=(2,), hidden=(128, 128))
ToyDiscriminator = functools.partial(MLPDiscriminator, hidden=(128, 128))
SNDCGANDiscriminator = functools.partial(DCGANDiscriminator, spectral_norm=True)

# Tiny variants for tests.
TinyDCGANGenerator = functools.partial(DCGANGenerator, latent_dim=8, features=4, label_features=4)
TinyDCGANDiscriminator = functools.partial(DCGANDiscriminator, features=4, label_features=4)
