"""Spatial self-attention block of the DDPM U-Net (Ho et al. 2020, after PixelCNN++ / SAGAN)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gmzoo.nn.normalization import GroupNorm


class SelfAttention2D(nn.Module):
    """Multi-head self-attention over the H*W positions of `[B, H, W, C]`, with a residual:

        h = GroupNorm(x);  q, k, v = h W_q, h W_k, h W_v  (one Dense to 3C)
        out = x + softmax(q k^T / sqrt(C / heads)) v W_o

    `W_o` starts at zero (`zero_init`), so the block is the identity at init (DDPM's
    `proj_out` with init scale 0). Positions enter only through x: the block is
    permutation-equivariant over positions.
    """

    num_heads: int = 1
    num_groups: int = 8
    zero_init: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, height, width, channels = x.shape
        if channels % self.num_heads:
            raise ValueError(f"SelfAttention2D: {channels} channels do not split into {self.num_heads} heads")
        n, heads, head_dim = height * width, self.num_heads, channels // self.num_heads
        h = GroupNorm(num_groups=self.num_groups, name="norm")(x).reshape(b * n, channels)  # [B*N, C]
        # Dense layers on 2-D [B*N, C] and attention with the batch axes leading: on XLA:CPU
        # this runs ~2x faster than Dense on [B, H, W, C] and einsum "bnhd,bmhd->bhnm".
        qkv = nn.Dense(3 * channels, name="qkv")(h)  # [B*N, 3C]
        q, k, v = (qkv[:, i * channels:(i + 1) * channels].reshape(b, n, heads, head_dim)
                   .transpose(0, 2, 1, 3) for i in range(3))  # [B, heads, N, d] each
        logits = jnp.einsum("bhnd,bhmd->bhnm", q, k) / jnp.sqrt(head_dim).astype(x.dtype)  # [B, heads, N, N]
        out = jnp.einsum("bhnm,bhmd->bhnd", jax.nn.softmax(logits, axis=-1), v)  # [B, heads, N, d]
        out = out.transpose(0, 2, 1, 3).reshape(b * n, channels)  # [B*N, C]
        kernel_init = nn.initializers.zeros_init() if self.zero_init else nn.initializers.lecun_normal()
        out = nn.Dense(channels, kernel_init=kernel_init, name="proj_out")(out)
        return x + out.reshape(x.shape)
