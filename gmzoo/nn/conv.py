"""Small strided conv / transposed-conv stacks: the conv image encoder/decoder of the VAE family.

Each stage halves (encoder) or doubles (decoder) the spatial size with a stride-2 convolution
and "SAME" padding, so an image of height H and width W needs H and W divisible by
`2 ** num_stages` (two stages: 8x8 -> 2x2, 28x28 -> 7x7, 32x32 -> 8x8).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")


def _conv_stride2(y: jax.Array, kernel: jax.Array) -> jax.Array:
    """``[B, 2H, 2W, C_up] -> [B, H, W, C]``: stride-2 "SAME" convolution, kernel ``[k, k, C_up, C]``."""
    return lax.conv_general_dilated(y, kernel, (2, 2), "SAME", dimension_numbers=_NHWC)


@jax.custom_vjp
def conv_transpose_stride2(h: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-2 transposed convolution: the adjoint of ``y -> _conv_stride2(y, kernel)``.

    ``h [B, H, W, C] -> [B, 2H, 2W, C_up]`` with ``kernel [k, k, C_up, C]``. The backward pass
    is written from the adjoint identity <g, S_k^T h> = <S_k g, h>: dh = S_k g and
    dk = grad_k <S_k g, h>, both ordinary stride-2 convolutions. Autodiff would instead build
    the kernel gradient as a window-dilated convolution, which XLA:CPU runs 10-20x slower.
    """
    b, height, width, _ = h.shape
    y0 = jnp.zeros((b, 2 * height, 2 * width, kernel.shape[2]), h.dtype)
    return jax.linear_transpose(lambda y: _conv_stride2(y, kernel), y0)(h)[0]


def _conv_transpose_fwd(h, kernel):
    return conv_transpose_stride2(h, kernel), (h, kernel)


def _conv_transpose_bwd(residuals, g):
    h, kernel = residuals
    dh = _conv_stride2(g, kernel)
    dkernel = jax.grad(lambda k: jnp.vdot(_conv_stride2(g, k), h))(kernel)
    return dh, dkernel


conv_transpose_stride2.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


class UpConv(nn.Module):
    """Doubles H and W: ``conv_transpose_stride2`` with a 3x3 kernel, plus a bias."""

    features: int

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        # Each output pixel sums over the C input channels of a 3x3 window: fan-in 9 C.
        kernel = self.param("kernel", nn.initializers.variance_scaling(1.0, "fan_out", "truncated_normal"),
                            (3, 3, self.features, h.shape[-1]))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return conv_transpose_stride2(h, kernel.astype(h.dtype)) + bias.astype(h.dtype)


def conv_image_shape_error(image_shape: tuple[int, ...], num_stages: int) -> str | None:
    """Why a conv stack with `num_stages` stride-2 stages cannot take `image_shape`, or None."""
    factor = 2**num_stages
    if len(image_shape) != 3 or any(int(d) < 1 for d in image_shape):
        return f"image_shape must be (H, W, C) with positive sizes, got {tuple(image_shape)}"
    height, width, _ = image_shape
    if height % factor or width % factor:
        return (
            f"conv encoder/decoder with {num_stages} stride-2 stages takes H and W divisible by "
            f"{factor} (e.g. 8x8, 28x28, 32x32 for 2 stages), got {height}x{width}"
        )
    return None


class ConvEncoder(nn.Module):
    """Stride-2 3x3 convs with `features` channels, ReLU, then flatten: `[B,H,W,C] -> [B,F]`."""

    features: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, channels in enumerate(self.features):
            x = nn.relu(nn.Conv(channels, (3, 3), strides=(2, 2), padding="SAME", name=f"conv_{i}")(x))
        return x.reshape(x.shape[0], -1)  # [B, H/2^n * W/2^n * features[-1]]


class ConvDecoder(nn.Module):
    """Dense to a `H/2^n x W/2^n` grid, stride-2 transposed convs (`UpConv`), then a 3x3 conv head.

    Output: `[B, H, W, C, num_params]` unconstrained per-pixel likelihood parameters.
    """

    image_shape: tuple[int, int, int]
    features: Sequence[int]
    num_params: int

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        height, width, channels = self.image_shape
        factor = 2 ** len(self.features)
        top = self.features[-1]
        h = nn.relu(nn.Dense((height // factor) * (width // factor) * top)(z))
        h = h.reshape(z.shape[0], height // factor, width // factor, top)  # [B, h0, w0, F]
        for i, feats in enumerate(reversed(tuple(self.features))):
            h = nn.relu(UpConv(feats, name=f"deconv_{i}")(h))
        out = nn.Conv(channels * self.num_params, (3, 3), padding="SAME", name="head")(h)
        return out.reshape(z.shape[0], height, width, channels, self.num_params)  # [B, H, W, C, P]
