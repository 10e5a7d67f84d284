"""Energy networks ``E_theta(x) -> [B]``: an MLP for points (or flattened images) and a small
conv net for images.

Both use smooth activations (swish, Ramachandran et al. 2017, as IGEBM's successors and the
UvA deep-energy tutorial do): Langevin dynamics follow grad_x E, which a ReLU network makes
piecewise constant. The energy is one unbounded number per example, float32; its scale is
kept in check by the objective's penalty on squared energies, not by the network.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gmzoo.nn.conv import conv_image_shape_error
from gmzoo.nn.mlp import MLP

ARCHITECTURES = ("mlp", "conv")


class MLPEnergy(nn.Module):
    """Flattens ``x [B, ...]`` and applies dense layers ``hidden`` with swish, then one linear
    unit: ``[B]``."""

    hidden: Sequence[int] = (128, 128, 128)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = x.reshape(x.shape[0], -1)  # [B, D]
        return MLP((*self.hidden, 1), activation=nn.swish, name="mlp")(h)[:, 0].astype(jnp.float32)


class ConvEnergy(nn.Module):
    """``x [B, H, W, C] -> [B]``: a 3x3 conv with ``features[0]`` channels, then one stride-2
    3x3 conv per further entry of ``features`` (8x8 -> 4x4 -> 2x2 with three entries), swish
    after each, flattened into a swish MLP head with widths ``head`` and one linear unit."""

    features: Sequence[int] = (32, 64, 64)
    head: Sequence[int] = (128,)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.swish(nn.Conv(self.features[0], (3, 3), padding="SAME", name="conv_0")(x))
        for i, channels in enumerate(self.features[1:], start=1):
            h = nn.swish(nn.Conv(channels, (3, 3), strides=(2, 2), padding="SAME",
                                 name=f"conv_{i}")(h))  # [B, H / 2^i, W / 2^i, channels]
        h = h.reshape(h.shape[0], -1)  # [B, F]
        return MLP((*self.head, 1), activation=nn.swish, name="head")(h)[:, 0].astype(jnp.float32)


def image_shape_error(image_shape: tuple[int, ...], architecture: str,
                      features: Sequence[int]) -> str | None:
    """Why ``architecture`` cannot take inputs of ``image_shape`` (``[2]`` for points), or
    None."""
    if architecture not in ARCHITECTURES:
        return f"architecture={architecture!r}; choose one of {', '.join(ARCHITECTURES)}"
    if architecture == "conv":
        if len(image_shape) != 3:
            return (f"the conv energy takes images (H, W, C), got inputs of shape "
                    f"{tuple(image_shape)}; use model.architecture=mlp")
        if len(features) < 1 or any(f < 1 for f in features):
            return f"features={tuple(features)} must be one or more positive widths"
        return conv_image_shape_error(tuple(image_shape), len(features) - 1)
    return None
