"""Multi-layer perceptron blocks, and the MLP image encoder/decoder of the VAE family.

An image encoder maps `[B, H, W, C]` to a feature vector `[B, F]`; an image decoder maps a
latent `[B, Z]` to `num_params` unconstrained numbers per pixel and channel,
`[B, H, W, C, num_params]` (the likelihood head turns them into logits, means, scales).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax


class MLP(nn.Module):
    """Dense layers `features[0] -> ... -> features[-1]` with `activation` between them."""

    features: Sequence[int]
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    activate_final: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, width in enumerate(self.features):
            x = nn.Dense(width, name=f"dense_{i}")(x)
            if i < len(self.features) - 1 or self.activate_final:
                x = self.activation(x)
        return x


class MLPEncoder(nn.Module):
    """Flatten the image and apply an MLP whose widths are `hidden`."""

    hidden: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = x.reshape(x.shape[0], -1)  # [B, H*W*C]
        return MLP(tuple(self.hidden), activate_final=True)(h)  # [B, hidden[-1]]


class MLPDecoder(nn.Module):
    """MLP with widths `reversed(hidden)`, then a dense layer to every pixel's parameters."""

    image_shape: tuple[int, int, int]
    hidden: Sequence[int]
    num_params: int

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        h = MLP(tuple(reversed(self.hidden)), activate_final=True)(z)  # [B, hidden[0]]
        out = nn.Dense(math.prod(self.image_shape) * self.num_params)(h)
        return out.reshape(z.shape[0], *self.image_shape, self.num_params)  # [B, H, W, C, P]


def mlp_image_shape_error(image_shape: tuple[int, ...]) -> str | None:
    """Why an MLP encoder/decoder cannot take `image_shape`, or None (any positive (H, W, C))."""
    if len(image_shape) != 3 or any(int(d) < 1 for d in image_shape):
        return f"image_shape must be (H, W, C) with positive sizes, got {tuple(image_shape)}"
    return None

