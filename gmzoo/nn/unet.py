"""The DDPM U-Net (Ho et al. 2020, Appendix B; after PixelCNN++ and Wide ResNets), scaled down.

    x [B, H, W, C] (++ cond on channels) -> conv3x3 -> down path -> middle -> up path -> out
    down:   per level (channels base * mult): num_res_blocks x [ResBlock (+ attention)],
            then a stride-2 conv (not after the last level)
    middle: ResBlock, attention, ResBlock
    up:     per level, reversed: num_res_blocks + 1 x [concat skip, ResBlock (+ attention)],
            then nearest-neighbour x2 resize + conv3x3 (not after level 0)
    out:    GroupNorm, SiLU, conv3x3 to out_channels, zero-initialised (the output is 0 at init)

Every activation of the down path (conv_in, each block, each downsample) is a skip that one up
block concatenates. Attention runs at the spatial sizes (height) listed in
`attention_resolutions`, including the middle if its size is listed. The time embedding (and
class embedding) of `gmzoo.nn.embeddings.TimeEmbedding`, 4 * base_channels wide, is added in every
ResBlock. Upsampling is resize + conv, not a transposed conv (XLA:CPU differentiates transposed
convs slowly). H and W must be divisible by 2 ** (len(channel_mults) - 1): see
`unet_shape_error`.

Call convention of every denoiser: `apply(params, x_t, t, y=None, cond=None, train=False)` with
t the noise-conditioning value (timestep index 0..T-1, or 999 * t in continuous time).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from gmzoo.nn.attention import SelfAttention2D
from gmzoo.nn.embeddings import TimeEmbedding
from gmzoo.nn.normalization import GroupNorm


def _zeros_or_default(zero: bool):
    return nn.initializers.zeros_init() if zero else nn.initializers.lecun_normal()


class ResBlock(nn.Module):
    """DDPM residual block with the time embedding added between the two convolutions:

        h = conv3x3(SiLU(GroupNorm(x))) + Dense(SiLU(emb))
        h = conv3x3(dropout(SiLU(GroupNorm(h))))           (zero-initialised if `zero_init`)
        out = skip(x) + h,   skip = 1x1 conv if the channel count changes, else identity

    `x [B, H, W, C_in], emb [B, E] -> [B, H, W, features]`.
    """

    features: int
    num_groups: int = 8
    dropout: float = 0.0
    zero_init: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, emb: jax.Array, train: bool = False) -> jax.Array:
        h = nn.silu(GroupNorm(num_groups=self.num_groups, name="norm_0")(x))
        h = nn.Conv(self.features, (3, 3), padding="SAME", name="conv_0")(h)  # [B, H, W, F]
        h = h + nn.Dense(self.features, name="emb_proj")(nn.silu(emb))[:, None, None, :]
        h = nn.silu(GroupNorm(num_groups=self.num_groups, name="norm_1")(h))
        if self.dropout > 0:
            h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = nn.Conv(self.features, (3, 3), padding="SAME", kernel_init=_zeros_or_default(self.zero_init),
                    name="conv_1")(h)
        skip = x if x.shape[-1] == self.features else nn.Conv(self.features, (1, 1), name="skip")(x)
        return skip + h  # [B, H, W, F]


class Downsample(nn.Module):
    """`[B, H, W, C] -> [B, H/2, W/2, C]`: 3x3 conv with stride 2 ("SAME" padding)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Conv(x.shape[-1], (3, 3), strides=(2, 2), padding="SAME", name="conv")(x)


class Upsample(nn.Module):
    """`[B, H, W, C] -> [B, 2H, 2W, C]`: nearest-neighbour x2 resize, then a 3x3 conv."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, height, width, channels = x.shape
        x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, height, 2, width, 2, channels))
        x = x.reshape(b, 2 * height, 2 * width, channels)  # [B, 2H, 2W, C]
        return nn.Conv(channels, (3, 3), padding="SAME", name="conv")(x)


def unet_shape_error(image_shape: tuple[int, ...], channel_mults: tuple[int, ...]) -> str | None:
    """Why a U-Net with `channel_mults` cannot take images of `image_shape` (H, W, C), or None."""
    if len(image_shape) != 3 or any(int(d) < 1 for d in image_shape):
        return f"the U-Net takes images [B, H, W, C] with positive sizes, got {tuple(image_shape)}"
    factor = 2 ** (len(channel_mults) - 1)
    height, width, _ = image_shape
    if height % factor or width % factor:
        return (f"a U-Net with channel_mults={tuple(channel_mults)} downsamples {len(channel_mults) - 1} "
                f"times, so H and W must be divisible by {factor}; got {height}x{width} "
                f"(pad or crop the images, or use fewer channel_mults)")
    return None


def unet_config_error(base_channels: int, channel_mults: tuple[int, ...], num_groups: int,
                      num_heads: int = 1, attention: bool = False) -> str | None:
    """Why these U-Net widths do not fit together (GroupNorm groups, attention heads), or None."""
    if base_channels < 1 or not channel_mults or min(channel_mults) < 1:
        return (f"base_channels and channel_mults must be positive (at least one level), got "
                f"base_channels={base_channels}, channel_mults={tuple(channel_mults)}")
    widths = sorted({base_channels * m for m in channel_mults})
    if num_groups < 1 or any(w % num_groups for w in widths):
        return f"num_groups={num_groups} must divide every level's channel count {widths}"
    if attention and (num_heads < 1 or any(w % num_heads for w in widths)):
        return f"num_heads={num_heads} must divide every level's channel count {widths}"
    return None


class UNet(nn.Module):
    """Denoiser `(x [B,H,W,C], t [B], y [B] | None, cond [B,H,W,Cc] | None) -> [B,H,W,out]`.

    See the module docstring for the layout. `num_classes` > 0 adds a class embedding of
    `num_classes + 1` rows (the last = "no label", chosen by `y=None`). `cond` is concatenated
    to x on channels (super-resolution stages of a cascade). `out_channels` defaults to the
    channels of x. `train=True` turns dropout on (needs the "dropout" RNG stream if dropout > 0).
    """

    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (4,)
    num_heads: int = 1
    dropout: float = 0.0
    num_classes: int = 0
    out_channels: int | None = None
    num_groups: int = 8

    def __post_init__(self) -> None:
        error = unet_config_error(self.base_channels, tuple(self.channel_mults), self.num_groups,
                                  self.num_heads, bool(self.attention_resolutions))
        if error is None and self.num_res_blocks < 1:
            error = f"num_res_blocks must be >= 1, got {self.num_res_blocks}"
        if error is None and not 0.0 <= self.dropout < 1.0:
            error = f"dropout must be in [0, 1), got {self.dropout}"
        if error is None and (self.num_classes < 0 or (self.out_channels or 1) < 1):
            error = f"num_classes must be >= 0 and out_channels >= 1, got {self.num_classes}, {self.out_channels}"
        if error is not None:
            raise ValueError(f"UNet: {error}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.typing.ArrayLike, y: jax.Array | None = None,
                 cond: jax.Array | None = None, *, train: bool = False) -> jax.Array:
        error = unet_shape_error(x.shape[1:], self.channel_mults)
        if error is not None:
            raise ValueError(error)
        out_channels = self.out_channels or x.shape[-1]
        if cond is not None:
            if cond.ndim != 4 or cond.shape[:3] != x.shape[:3]:
                raise ValueError(f"cond must be [B, H, W, Cc] with x's B, H, W {x.shape[:3]}, got {cond.shape}")
            x = jnp.concatenate([x, cond.astype(x.dtype)], axis=-1)  # [B, H, W, C + Cc]
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x.shape[0],))  # [B]
        emb = TimeEmbedding(4 * self.base_channels, self.base_channels, self.num_classes,
                            name="time_embed")(t, y)  # [B, 4 * base]

        block = functools.partial(ResBlock, num_groups=self.num_groups, dropout=self.dropout)
        attention = functools.partial(SelfAttention2D, num_heads=self.num_heads, num_groups=self.num_groups)
        last = len(self.channel_mults) - 1
        size = x.shape[1]  # current height, matched against attention_resolutions

        h = nn.Conv(self.base_channels, (3, 3), padding="SAME", name="conv_in")(x)  # [B, H, W, base]
        skips = [h]
        for level, mult in enumerate(self.channel_mults):
            for i in range(self.num_res_blocks):
                h = block(self.base_channels * mult, name=f"down_{level}_block_{i}")(h, emb, train)
                if size in self.attention_resolutions:
                    h = attention(name=f"down_{level}_attn_{i}")(h)
                skips.append(h)
            if level != last:
                h = Downsample(name=f"down_{level}_downsample")(h)
                size //= 2
                skips.append(h)

        channels = h.shape[-1]
        h = block(channels, name="mid_block_0")(h, emb, train)
        if size in self.attention_resolutions:
            h = attention(name="mid_attn")(h)
        h = block(channels, name="mid_block_1")(h, emb, train)

        for level, mult in reversed(list(enumerate(self.channel_mults))):
            for i in range(self.num_res_blocks + 1):
                h = jnp.concatenate([h, skips.pop()], axis=-1)
                h = block(self.base_channels * mult, name=f"up_{level}_block_{i}")(h, emb, train)
                if size in self.attention_resolutions:
                    h = attention(name=f"up_{level}_attn_{i}")(h)
            if level != 0:
                h = Upsample(name=f"up_{level}_upsample")(h)
                size *= 2

        h = nn.silu(GroupNorm(num_groups=self.num_groups, name="norm_out")(h))
        return nn.Conv(out_channels, (3, 3), padding="SAME", kernel_init=nn.initializers.zeros_init(),
                       name="conv_out")(h)  # [B, H, W, out_channels]


# Variants (Flax's `ResNet50 = partial(ResNet, ...)` pattern): the benchmarks/diffusion_step.py
# networks, 0.177M (small: 8 -> 4) and 0.430M (medium: 8 -> 4 -> 2) parameters at 8x8x1.
SmallUNet = functools.partial(UNet, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
                              attention_resolutions=(4,))
MediumUNet = functools.partial(UNet, base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=2,
                               attention_resolutions=(4, 2))
TinyUNet = functools.partial(UNet, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                             attention_resolutions=(), num_groups=4)
