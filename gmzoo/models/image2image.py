"""Image-to-image GAN players: pix2pix, SRGAN, CycleGAN (architectures only; the cGAN + L1,
adversarial + content and cycle-consistency objectives belong in gmzoo.losses).

Call convention (images `[B, H, W, C]` in [-1, 1], NHWC):

    generator      apply(vars, x, *, train=False) -> image [B, H', W', C']
    discriminator  apply(vars, x, cond=None, *, train=False) -> logits

`train=True` puts batch norm in batch-statistics mode (pass `mutable=["batch_stats"]`) and turns
dropout on (pass `rngs={"dropout": key}`). Instance norm (`flax.linen.InstanceNorm`: per example
and channel over H, W, then a learned per-channel affine map) has no state and no mode.

- `Pix2PixGenerator` (Isola et al. 2017, sec. 3.1 and appendix 6.1.1): a U-Net. With F the
  `features`, n the depth and F_i = F min(2^i, 8):

      down i = 0..n-1:  Conv4x4/2(F_i) -> norm (not i = 0, nor a 1x1 map) -> LReLU(0.2) = e_i
      up   i = n-2..0:  UpConv(F_i) -> norm -> Dropout(0.5, first `dropout_blocks`) -> ReLU
                        -> concat e_i                                      (the skip connection)
      out:              UpConv(out_channels) -> tanh

  n halves H and W while both are even, at most `max_depth` times, and must be >= 2 (one skip):
  8x8 -> 4 -> 2 -> 1 (n = 3), 28x28 -> 14 -> 7 (n = 2); see `pix2pix_shape_error`.
- `PatchDiscriminator` (PatchGAN, pix2pix sec. 3.2; the official code's NLayerDiscriminator),
  all convs 4x4 with padding 1, k = `num_layers`:

      Conv/2(F) -> LReLU, k - 1 x [Conv/2(F_i) -> norm -> LReLU],
      Conv/1(F_k) -> norm -> LReLU, Conv/1(1)          -> logits [B, h, w, 1]

  Each logit sees a `receptive_field(patch_layers(k)).size` square of the input: 16 (k = 1, the
  default, suited to 8x8 / 28x28), 34 (k = 2), 70 (k = 3, the paper's 70x70 PatchGAN). With
  `paired=True` it judges the pair (cond, x) concatenated on channels (pix2pix); with
  `paired=False` the single image x (CycleGAN, `CycleGANDiscriminator`).
- `SRGenerator` (SRResNet / SRGAN generator, Ledig et al. 2017, fig. 4):

      Conv9x9(F) -> PReLU = h0;  num_blocks x [Conv3x3 -> BN -> PReLU -> Conv3x3 -> BN, + skip]
      -> Conv3x3 -> BN, + h0;  log2(scale) x [Conv3x3(4F) -> pixel_shuffle(2) -> PReLU]
      -> Conv9x9(out_channels) -> tanh          ([B, H, W, C] -> [B, scale H, scale W, C'])

- `SRDiscriminator` (Ledig et al. fig. 4, scaled down): Conv3x3/1(F) -> LReLU, then per stage
  i = 0..num_stages-1 [Conv3x3/1(F 2^i) (BN, not i = 0), Conv3x3/2(F 2^i) -> BN] each with
  LReLU(0.2), flatten, Dense(dense_features) -> LReLU -> Dense(1) -> logits [B].
- `ResnetGenerator` (CycleGAN, Zhu et al. 2017, appendix 7.2; Johnson et al. 2016):

      c7s1-F, d2F, d4F, num_blocks x R4F, u2F, uF, c7s1-out_channels -> tanh

  c7s1-k: reflection pad 3, Conv7x7(k), IN, ReLU (no IN / ReLU at the output); dk: Conv3x3/2,
  IN, ReLU; Rk: two reflection-padded Conv3x3 with IN (ReLU between) plus the skip; uk: UpConv,
  IN, ReLU. H and W divisible by 4 and >= 8: 28 -> 14 -> 7, 8 -> 4 -> 2.

Every learned x2 upsampling is `gmzoo.nn.conv.UpConv` (3x3 transposed conv with a fast VJP on
XLA:CPU), except SRGAN's sub-pixel convolution. Shapes are checked before the first layer runs,
with one-line errors.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from gmzoo.nn.tree import param_count
from gmzoo.models.gan import LEAKY_SLOPE
from gmzoo.nn.conv import UpConv

__all__ = [
    "CycleGANDiscriminator", "NORMS", "PatchDiscriminator", "Pix2PixGenerator", "ReceptiveField",
    "ResnetGenerator", "SRDiscriminator", "SRGenerator", "SR_SCALES", "TinyPatchDiscriminator",
    "TinyPix2PixGenerator", "TinyResnetGenerator", "TinySRDiscriminator", "TinySRGenerator",
    "param_count", "patch_layers", "patch_output_size", "pix2pix_depth", "pix2pix_shape_error",
    "pixel_shuffle", "pixel_unshuffle", "receptive_field", "resnet_shape_error",
]

NORMS: tuple[str, ...] = ("batch", "instance")
SR_SCALES: tuple[int, ...] = (2, 4)
MAX_WIDTH_MULT = 8  # pix2pix caps the widths at 8F (512 for F = 64)


def _check_image(name: str, x: jax.Array) -> None:
    if x.ndim != 4 or min(x.shape) < 1:
        raise ValueError(f"{name} takes images [B, H, W, C] with positive sizes, got {tuple(x.shape)}")


def _norm(kind: str, train: bool, momentum: float, name: str) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm(use_running_average=not train, momentum=momentum, name=name)
    return nn.InstanceNorm(epsilon=1e-5, name=name)


def _check_fields(name: str, norm: str | None = None, **positive: int) -> None:
    bad = {k: v for k, v in positive.items() if v is not None and v < 1}
    if bad:
        raise ValueError(f"{name}: {', '.join(positive)} must be positive, got {bad}")
    if norm is not None and norm not in NORMS:
        raise ValueError(f"{name}: norm must be one of {NORMS}, got {norm!r}")


# ---- pix2pix (Isola et al. 2017) ----------------------------------------------------------------

def pix2pix_depth(height: int, width: int, max_depth: int = 8) -> int:
    """Number of stride-2 levels of the pix2pix U-Net: halve while H and W are both even."""
    depth = 0
    while depth < max_depth and height % 2 == 0 and width % 2 == 0:
        height, width, depth = height // 2, width // 2, depth + 1
    return depth


def pix2pix_shape_error(image_shape: Sequence[int], max_depth: int = 8) -> str | None:
    """Why the pix2pix U-Net cannot take images of `image_shape` (H, W, C), or None."""
    if len(image_shape) != 3 or any(int(d) < 1 for d in image_shape):
        return f"Pix2PixGenerator takes images (H, W, C) with positive sizes, got {tuple(image_shape)}"
    height, width, channels = image_shape
    if pix2pix_depth(height, width, max_depth) < 2:
        return (f"Pix2PixGenerator halves H and W while both are even and needs >= 2 levels (one "
                f"skip connection), so H and W must be divisible by 4 (8x8 -> 1x1 in 3 levels, "
                f"28x28 -> 7x7 in 2) and max_depth >= 2; got {height}x{width}x{channels}, "
                f"max_depth={max_depth}")
    return None


class Pix2PixGenerator(nn.Module):
    """pix2pix U-Net `x [B, H, W, C] -> [B, H, W, out_channels]` in [-1, 1] (plan in the module
    docstring). `norm` is batch norm as in the paper (which also keeps dropout and batch
    statistics on at test time: call with `train=True` for that) or "instance"."""

    features: int = 64
    out_channels: int | None = None  # None: the input's channels
    max_depth: int = 8
    norm: str = "batch"
    dropout_rate: float = 0.5
    dropout_blocks: int = 3  # the first decoder blocks (nearest the bottleneck) with dropout
    bn_momentum: float = 0.9

    def __post_init__(self) -> None:
        _check_fields("Pix2PixGenerator", self.norm, features=self.features,
                      out_channels=self.out_channels, max_depth=self.max_depth)
        if not 0.0 <= self.dropout_rate < 1.0 or self.dropout_blocks < 0:
            raise ValueError(f"Pix2PixGenerator: dropout_rate must be in [0, 1) and dropout_blocks "
                             f">= 0, got {self.dropout_rate}, {self.dropout_blocks}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        _check_image("Pix2PixGenerator", x)
        error = pix2pix_shape_error(x.shape[1:], self.max_depth)
        if error is not None:
            raise ValueError(error)
        depth = pix2pix_depth(x.shape[1], x.shape[2], self.max_depth)
        width = [self.features * min(2**i, MAX_WIDTH_MULT) for i in range(depth)]
        norm = functools.partial(_norm, self.norm, train, self.bn_momentum)

        skips, h = [], x
        for i in range(depth):
            use_norm = i > 0 and (h.shape[1] // 2) * (h.shape[2] // 2) > 1  # not input, not 1x1
            h = nn.Conv(width[i], (4, 4), strides=(2, 2), padding="SAME", use_bias=not use_norm,
                        name=f"down_{i}")(h)  # [B, H / 2^(i+1), W / 2^(i+1), F_i]
            if use_norm:
                h = norm(f"down_norm_{i}")(h)
            h = nn.leaky_relu(h, LEAKY_SLOPE)
            skips.append(h)
        h = skips.pop()  # the bottleneck e_{n-1}
        for block, i in enumerate(range(depth - 2, -1, -1)):
            h = norm(f"up_norm_{i}")(UpConv(width[i], name=f"up_{i}")(h))  # [B, ., ., F_i]
            if block < self.dropout_blocks and self.dropout_rate > 0:
                h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
            h = jnp.concatenate([nn.relu(h), skips.pop()], axis=-1)  # [B, ., ., 2 F_i]
        out = UpConv(self.out_channels or x.shape[-1], name="out")(h)
        return jnp.tanh(out)  # [B, H, W, C']


# ---- PatchGAN ------------------------------------------------------------------------------------

class ReceptiveField(NamedTuple):
    """Output index i of a conv stack sees input indices [i * stride + offset, ... + size - 1]
    (per spatial axis; indices outside the image are padding)."""

    size: int
    stride: int
    offset: int


def receptive_field(layers: Sequence[tuple[int, int, int]]) -> ReceptiveField:
    """Receptive field of a stack of (kernel, stride, padding) convs, first layer first:

        size += (k - 1) * jump,   offset -= p * jump,   jump *= s   (per layer)
    """
    size, jump, offset = 1, 1, 0
    for kernel, stride, padding in layers:
        size += (kernel - 1) * jump
        offset -= padding * jump
        jump *= stride
    return ReceptiveField(size, jump, offset)


def patch_layers(num_layers: int) -> tuple[tuple[int, int, int], ...]:
    """(kernel, stride, padding) of the PatchDiscriminator convs: num_layers stride-2, two stride-1."""
    return ((4, 2, 1),) * num_layers + ((4, 1, 1),) * 2


def patch_output_size(size: int, num_layers: int) -> int:
    """Logit-map side of the PatchDiscriminator for an input side `size` (< 1: too small)."""
    for kernel, stride, padding in patch_layers(num_layers):
        size = (size + 2 * padding - kernel) // stride + 1
        if size < 1:
            return 0
    return size


class PatchDiscriminator(nn.Module):
    """PatchGAN `x [B, H, W, C] (, cond [B, H, W, C_c]) -> logits [B, h, w, 1]`, one logit per
    overlapping `receptive_field(patch_layers(num_layers)).size` square patch (plan in the module
    docstring). `paired=True` (pix2pix) requires `cond`, the generator's input, and judges
    concat(cond, x); `paired=False` (CycleGAN) refuses it."""

    features: int = 64
    num_layers: int = 1
    paired: bool = True
    norm: str = "batch"
    bn_momentum: float = 0.9

    def __post_init__(self) -> None:
        _check_fields("PatchDiscriminator", self.norm, features=self.features,
                      num_layers=self.num_layers)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, cond: jax.Array | None = None, *,
                 train: bool = False) -> jax.Array:
        _check_image("PatchDiscriminator", x)
        if self.paired and (cond is None or cond.ndim != 4 or cond.shape[:3] != x.shape[:3]):
            raise ValueError(f"PatchDiscriminator(paired=True) judges (cond, x): pass cond "
                             f"[B, H, W, C] with x's B, H, W {tuple(x.shape[:3])}, got "
                             f"{None if cond is None else tuple(cond.shape)}")
        if not self.paired and cond is not None:
            raise ValueError("PatchDiscriminator(paired=False) judges single images but got cond; "
                             "build it with paired=True for a conditional (pix2pix) discriminator")
        k, rf = self.num_layers, receptive_field(patch_layers(self.num_layers)).size
        if min(patch_output_size(s, k) for s in x.shape[1:3]) < 1:
            smallest = next(s for s in range(1, 10_000) if patch_output_size(s, k) >= 1)
            raise ValueError(f"PatchDiscriminator(num_layers={k}, receptive field {rf}) needs H "
                             f"and W >= {smallest}, got {x.shape[1]}x{x.shape[2]}")
        h = x if cond is None else jnp.concatenate([cond, x.astype(cond.dtype)], axis=-1)
        for i, (kernel, stride, padding) in enumerate(patch_layers(k)[:-1]):
            use_norm = i > 0  # no norm on the input layer
            h = nn.Conv(self.features * min(2**i, MAX_WIDTH_MULT), (kernel, kernel),
                        strides=(stride, stride), padding=padding, use_bias=not use_norm,
                        name=f"conv_{i}")(h)
            if use_norm:
                h = _norm(self.norm, train, self.bn_momentum, f"norm_{i}")(h)
            h = nn.leaky_relu(h, LEAKY_SLOPE)
        return nn.Conv(1, (4, 4), padding=1, name="logit")(h)  # [B, h, w, 1]


# ---- SRGAN (Ledig et al. 2017) -------------------------------------------------------------------

def pixel_shuffle(x: jax.Array, r: int) -> jax.Array:
    """Depth to space (Shi et al. 2016): `[B, H, W, r^2 C] -> [B, rH, rW, C]` with

        out[b, r h + i, r w + j, c] = x[b, h, w, (r i + j) C + c]

    (TensorFlow's `depth_to_space` order; PyTorch's NCHW PixelShuffle reads channel c r^2 + r i + j
    instead, a fixed permutation of the preceding conv's output channels)."""
    b, height, width, depth = x.shape
    if depth % (r * r):
        raise ValueError(f"pixel_shuffle: channels {depth} must be divisible by r^2 = {r * r}")
    c = depth // (r * r)
    x = x.reshape(b, height, width, r, r, c).transpose(0, 1, 3, 2, 4, 5)  # [B, H, r, W, r, C]
    return x.reshape(b, height * r, width * r, c)


def pixel_unshuffle(x: jax.Array, r: int) -> jax.Array:
    """Space to depth, the inverse of `pixel_shuffle`: `[B, rH, rW, C] -> [B, H, W, r^2 C]`."""
    b, height, width, c = x.shape
    if height % r or width % r:
        raise ValueError(f"pixel_unshuffle: H and W must be divisible by r = {r}, got {height}x{width}")
    x = x.reshape(b, height // r, r, width // r, r, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, height // r, width // r, r * r * c)


class SRGenerator(nn.Module):
    """SRResNet `x [B, H, W, C] -> [B, scale H, scale W, out_channels]` in [-1, 1] (plan in the
    module docstring): 7x7 -> 28x28 with scale 4, 14x14 -> 28x28 with scale 2. PReLU has one
    learned slope per layer, initialised at 0.25 (He et al. 2015)."""

    scale: int = 4
    num_blocks: int = 16
    features: int = 64
    out_channels: int | None = None  # None: the input's channels
    bn_momentum: float = 0.9

    def __post_init__(self) -> None:
        if self.scale not in SR_SCALES:
            raise ValueError(f"SRGenerator: scale must be one of {SR_SCALES} (x2 sub-pixel "
                             f"stages), got {self.scale}")
        _check_fields("SRGenerator", num_blocks=self.num_blocks, features=self.features,
                      out_channels=self.out_channels)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        _check_image("SRGenerator", x)
        f = self.features
        conv = functools.partial(nn.Conv, padding="SAME")
        bn = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=self.bn_momentum)
        prelu = functools.partial(nn.PReLU, negative_slope_init=0.25)
        h0 = prelu(name="act_in")(conv(f, (9, 9), name="conv_in")(x))  # [B, H, W, F]
        h = h0
        for i in range(self.num_blocks):
            r = bn(name=f"block_{i}_bn_0")(conv(f, (3, 3), use_bias=False, name=f"block_{i}_conv_0")(h))
            r = prelu(name=f"block_{i}_act")(r)
            r = bn(name=f"block_{i}_bn_1")(conv(f, (3, 3), use_bias=False, name=f"block_{i}_conv_1")(r))
            h = h + r
        h = h0 + bn(name="mid_bn")(conv(f, (3, 3), use_bias=False, name="mid_conv")(h))  # global skip
        for i in range(self.scale.bit_length() - 1):  # log2(scale) x2 stages
            h = pixel_shuffle(conv(4 * f, (3, 3), name=f"up_{i}_conv")(h), 2)  # [B, 2H, 2W, F]
            h = prelu(name=f"up_{i}_act")(h)
        out = conv(self.out_channels or x.shape[-1], (9, 9), name="conv_out")(h)
        return jnp.tanh(out)  # [B, scale H, scale W, C']


class SRDiscriminator(nn.Module):
    """SRGAN discriminator `x [B, H, W, C] -> logits [B]` (plan in the module docstring; the paper
    has 4 stages and a 1024-wide dense layer for 96x96 crops). The dense layer's input size
    (H / 2^s W / 2^s F 2^(s-1), "SAME" strides rounding up) is fixed at init."""

    features: int = 64
    num_stages: int = 2
    dense_features: int = 256
    bn_momentum: float = 0.9

    def __post_init__(self) -> None:
        _check_fields("SRDiscriminator", features=self.features, num_stages=self.num_stages,
                      dense_features=self.dense_features)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        _check_image("SRDiscriminator", x)
        h = nn.leaky_relu(nn.Conv(self.features, (3, 3), padding="SAME", name="conv_in")(x), LEAKY_SLOPE)
        for i in range(self.num_stages):
            width = self.features * 2**i
            for j, stride in enumerate((1, 2)):
                if i == 0 and j == 0:
                    continue  # conv_in is stage 0's stride-1 conv (no BN on the input layer)
                h = nn.Conv(width, (3, 3), strides=(stride, stride), padding="SAME", use_bias=False,
                            name=f"stage_{i}_conv_{j}")(h)
                h = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                                 name=f"stage_{i}_bn_{j}")(h)
                h = nn.leaky_relu(h, LEAKY_SLOPE)
        h = h.reshape(x.shape[0], -1)  # [B, h w F 2^(s-1)]
        h = nn.leaky_relu(nn.Dense(self.dense_features, name="dense")(h), LEAKY_SLOPE)
        return nn.Dense(1, name="logit")(h)[:, 0]  # [B]


# ---- CycleGAN (Zhu et al. 2017) ------------------------------------------------------------------

def resnet_shape_error(image_shape: Sequence[int]) -> str | None:
    """Why the CycleGAN ResnetGenerator cannot take images of `image_shape` (H, W, C), or None."""
    if len(image_shape) != 3 or any(int(d) < 1 for d in image_shape):
        return f"ResnetGenerator takes images (H, W, C) with positive sizes, got {tuple(image_shape)}"
    height, width, channels = image_shape
    if height % 4 or width % 4 or min(height, width) < 8:
        return (f"ResnetGenerator downsamples twice and reflection-pads the H/4 x W/4 map by 1, so "
                f"H and W must be divisible by 4 and >= 8 (8x8 -> 2x2, 28x28 -> 7x7); got "
                f"{height}x{width}x{channels}")
    return None


def _reflect_conv(h: jax.Array, features: int, kernel: int, name: str, use_bias: bool) -> jax.Array:
    """Reflection-pad by kernel // 2, then a VALID conv: same H, W."""
    p = kernel // 2
    h = jnp.pad(h, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
    return nn.Conv(features, (kernel, kernel), padding="VALID", use_bias=use_bias, name=name)(h)


class ResnetGenerator(nn.Module):
    """CycleGAN generator `x [B, H, W, C] -> [B, H, W, out_channels]` in [-1, 1] (plan in the
    module docstring; the paper uses 6 blocks at 128x128 and 9 at 256x256). Convs followed by
    instance norm have no bias (its affine shift replaces it)."""

    features: int = 64
    num_blocks: int = 6
    out_channels: int | None = None  # None: the input's channels

    def __post_init__(self) -> None:
        _check_fields("ResnetGenerator", features=self.features, num_blocks=self.num_blocks,
                      out_channels=self.out_channels)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train  # instance norm has no state and no mode
        _check_image("ResnetGenerator", x)
        error = resnet_shape_error(x.shape[1:])
        if error is not None:
            raise ValueError(error)
        f = self.features
        norm = lambda name: nn.InstanceNorm(epsilon=1e-5, name=name)  # noqa: E731
        h = nn.relu(norm("norm_in")(_reflect_conv(x, f, 7, "conv_in", False)))  # [B, H, W, F]
        for i, width in enumerate((2 * f, 4 * f)):
            h = nn.Conv(width, (3, 3), strides=(2, 2), padding=1, use_bias=False, name=f"down_{i}")(h)
            h = nn.relu(norm(f"down_norm_{i}")(h))  # [B, H / 2^(i+1), W / 2^(i+1), width]
        for i in range(self.num_blocks):
            r = nn.relu(norm(f"block_{i}_norm_0")(_reflect_conv(h, 4 * f, 3, f"block_{i}_conv_0", False)))
            h = h + norm(f"block_{i}_norm_1")(_reflect_conv(r, 4 * f, 3, f"block_{i}_conv_1", False))
        for i, width in enumerate((2 * f, f)):
            h = nn.relu(norm(f"up_norm_{i}")(UpConv(width, name=f"up_{i}")(h)))
        out = _reflect_conv(h, self.out_channels or x.shape[-1], 7, "conv_out", True)
        return jnp.tanh(out)  # [B, H, W, C']


# Variants.
CycleGANDiscriminator = functools.partial(PatchDiscriminator, paired=False, norm="instance")

# Tiny variants for tests.
TinyPix2PixGenerator = functools.partial(Pix2PixGenerator, features=4)
TinyPatchDiscriminator = functools.partial(PatchDiscriminator, features=4)
TinySRGenerator = functools.partial(SRGenerator, num_blocks=2, features=4)
TinySRDiscriminator = functools.partial(SRDiscriminator, features=4, dense_features=8)
TinyResnetGenerator = functools.partial(ResnetGenerator, features=4, num_blocks=2)
