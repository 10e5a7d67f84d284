"""Embeddings of the noise-conditioning value (timestep) and class label for denoising networks."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


def sinusoidal_embedding(t: jax.typing.ArrayLike, dim: int, max_period: float = 10000.0) -> jax.Array:
    """`t [B] -> [B, dim]`: the Transformer position encoding as DDPM uses it for timesteps.

    With half = dim // 2 and frequencies w_i = max_period ** (-i / (half - 1)), i = 0..half-1
    (DDPM's `get_timestep_embedding`, Ho et al. 2020; Vaswani et al. 2017 Sec. 3.5):

        emb(t) = [sin(t w_0), ..., sin(t w_{half-1}), cos(t w_0), ..., cos(t w_{half-1})]

    An odd `dim` gets one trailing zero column. `t` is a float (e.g. the timestep index 0..T-1,
    or 999 * t for continuous time); a scalar is treated as `[1]`.
    """
    if dim < 2:
        raise ValueError(f"sinusoidal_embedding needs dim >= 2, got {dim}")
    t = jnp.atleast_1d(jnp.asarray(t, jnp.float32))  # [B]
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / max(half - 1, 1))  # [half]
    args = t[:, None] * freqs[None, :]  # [B, half]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)  # [B, 2 * half]
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb  # [B, dim]


class TimeEmbedding(nn.Module):
    """DDPM's time embedding, plus an optional class embedding added to it:

        emb(t, y) = Dense(SiLU(Dense(sinusoidal_embedding(t, sinusoidal_dim)))) + E[y]

    Both Dense layers have `features` units. With `num_classes` > 0 the table E has
    `num_classes + 1` rows; the last row, index `num_classes`, is "no label" (classifier-free
    guidance drops labels to it) and is what `y=None` selects. `t [B] -> [B, features]`.
    """

    features: int
    sinusoidal_dim: int
    num_classes: int = 0

    @nn.compact
    def __call__(self, t: jax.Array, y: jax.Array | None = None) -> jax.Array:
        emb = sinusoidal_embedding(t, self.sinusoidal_dim)  # [B, sinusoidal_dim]
        emb = nn.Dense(self.features, name="dense_0")(emb)
        emb = nn.Dense(self.features, name="dense_1")(nn.silu(emb))  # [B, features]
        if self.num_classes > 0:
            if y is None:
                y = jnp.full((emb.shape[0],), self.num_classes, jnp.int32)  # the "no label" row
            emb = emb + nn.Embed(self.num_classes + 1, self.features, name="class_embed")(y)
        elif y is not None:
            raise ValueError("got class labels y, but the network was built with num_classes=0 "
                             "(unconditional); set num_classes to the number of classes")
        return emb  # [B, features]
