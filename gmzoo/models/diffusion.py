"""Diffusion family networks (architectures only; losses in gmzoo.losses, samplers in gmzoo.diffusion).

Denoisers share one call convention, `apply(params, x_t, t, y=None, cond=None, train=False)`,
with t the noise-conditioning value (timestep index 0..T-1 for DDPM, 999 * t for SDEs):

- `UNet` (and `SmallUNet`, `MediumUNet`, `TinyUNet`), images `[B, H, W, C]` (gmzoo.nn.unet),
- `TimeMLP` (and `TinyTimeMLP`), vectors `[B, D]` (gmzoo.nn.time_mlp).

`NoiseClassifier` is the time-conditioned classifier p_phi(y | x_t, t) of classifier guidance
(Dhariwal & Nichol 2021, Sec. 4): the U-Net's down path and middle block, then global average
pooling and a Dense to logits.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from gmzoo.nn.embeddings import TimeEmbedding
from gmzoo.nn.normalization import GroupNorm
from gmzoo.nn.time_mlp import TimeMLP, TinyTimeMLP
from gmzoo.nn.unet import (
    Downsample,
    MediumUNet,
    ResBlock,
    SmallUNet,
    TinyUNet,
    UNet,
    unet_config_error,
    unet_shape_error,
)

__all__ = ["MediumUNet", "NoiseClassifier", "SmallUNet", "TimeMLP", "TinyNoiseClassifier", "TinyTimeMLP",
           "TinyUNet", "UNet"]


class NoiseClassifier(nn.Module):
    """Classifier on noisy images: `(x_t [B, H, W, C], t [B]) -> logits [B, num_classes]`.

    conv3x3 -> per level num_res_blocks ResBlocks (time embedding added), stride-2 conv between
    levels -> ResBlock -> GroupNorm, SiLU -> mean over H, W -> Dense. Classifier guidance adds
    s * grad_x log p_phi(y | x_t, t) to the score (Dhariwal & Nichol 2021, Algorithm 1).
    """

    num_classes: int = 10
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 1
    num_groups: int = 8

    def __post_init__(self) -> None:
        error = unet_config_error(self.base_channels, tuple(self.channel_mults), self.num_groups)
        if error is None and (self.num_classes < 2 or self.num_res_blocks < 1):
            error = (f"num_classes must be >= 2 and num_res_blocks >= 1, got {self.num_classes}, "
                     f"{self.num_res_blocks}")
        if error is not None:
            raise ValueError(f"NoiseClassifier: {error}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.typing.ArrayLike, *, train: bool = False) -> jax.Array:
        error = unet_shape_error(x.shape[1:], self.channel_mults)
        if error is not None:
            raise ValueError(error.replace("U-Net", "NoiseClassifier"))
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x.shape[0],))  # [B]
        emb = TimeEmbedding(4 * self.base_channels, self.base_channels, name="time_embed")(t)
        block = functools.partial(ResBlock, num_groups=self.num_groups)
        h = nn.Conv(self.base_channels, (3, 3), padding="SAME", name="conv_in")(x)
        for level, mult in enumerate(self.channel_mults):
            for i in range(self.num_res_blocks):
                h = block(self.base_channels * mult, name=f"down_{level}_block_{i}")(h, emb, train)
            if level != len(self.channel_mults) - 1:
                h = Downsample(name=f"down_{level}_downsample")(h)
        h = block(h.shape[-1], name="mid_block")(h, emb, train)
        h = nn.silu(GroupNorm(num_groups=self.num_groups, name="norm_out")(h))
        return nn.Dense(self.num_classes, name="logits")(h.mean(axis=(1, 2)))  # [B, num_classes]


TinyNoiseClassifier = functools.partial(NoiseClassifier, base_channels=8, channel_mults=(1, 2), num_groups=4)
