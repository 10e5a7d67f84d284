"""Per-image reconstruction metrics: PSNR and SSIM (pure JAX, jit-able, images [B, H, W, C]).

PSNR(x, y) = 10 log10( MAX^2 / MSE(x, y) ),  MSE averaged over H, W, C.                 (1)

SSIM (Wang, Bovik, Sheikh & Simoncelli 2004, eq. 13) with an 11x11 Gaussian window (sigma 1.5)
normalised to sum 1, statistics mu, sigma^2, sigma_xy as window-weighted moments, evaluated at
every position where the window fits inside the image ('valid', as their reference ssim_index.m),
and averaged over positions and channels:

  SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))
         with C1 = (k1 MAX)^2, C2 = (k2 MAX)^2, k1 = 0.01, k2 = 0.03                 (2)

This equals skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=MAX) averaged over channels. The window must fit in the
image: for 8x8 digits pass e.g. filter_size=7, filter_sigma=0.8 (skimage's window for sigma 0.8).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def _check_pair(x: jax.Array, y: jax.Array, name: str) -> None:
    if x.ndim != 4 or x.shape != y.shape:
        raise ValueError(f"{name} needs two images batches of one shape [B, H, W, C], got "
                         f"{x.shape} and {y.shape}")


def psnr(x: ArrayLike, y: ArrayLike, *, max_value: float = 1.0) -> jax.Array:
    """PSNR (1) in dB per image: [B, H, W, C] x2 -> [B]. Identical images give +inf."""
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    _check_pair(x, y, "psnr")
    mse = jnp.mean(jnp.square(x - y), axis=(1, 2, 3))  # [B]
    return 10.0 * jnp.log10(max_value**2 / mse)


def gaussian_window(filter_size: int, filter_sigma: float) -> jax.Array:
    """1-D Gaussian taps [filter_size] centred on the middle tap, normalised to sum 1."""
    t = jnp.arange(filter_size, dtype=jnp.float32) - (filter_size - 1) / 2.0
    w = jnp.exp(-0.5 * jnp.square(t / filter_sigma))
    return w / jnp.sum(w)


def _filter_valid(z: jax.Array, taps: jax.Array) -> jax.Array:
    """Separable 2-D Gaussian filter, 'valid' positions: [N, H, W, 1] -> [N, H-k+1, W-k+1, 1]."""
    k = taps.shape[0]
    dn = ("NHWC", "HWIO", "NHWC")
    z = jax.lax.conv_general_dilated(z, taps.reshape(k, 1, 1, 1), (1, 1), "VALID",
                                     dimension_numbers=dn)
    return jax.lax.conv_general_dilated(z, taps.reshape(1, k, 1, 1), (1, 1), "VALID",
                                        dimension_numbers=dn)


@functools.partial(jax.jit, static_argnames=("filter_size",))
def _ssim(x: jax.Array, y: jax.Array, max_value: float, filter_size: int, filter_sigma: float,
          k1: float, k2: float) -> jax.Array:
    b, h, w, c = x.shape
    # Channels become batch entries so each channel is filtered on its own.
    x = jnp.transpose(x, (0, 3, 1, 2)).reshape(b * c, h, w, 1)  # [B*C, H, W, 1]
    y = jnp.transpose(y, (0, 3, 1, 2)).reshape(b * c, h, w, 1)  # [B*C, H, W, 1]
    taps = gaussian_window(filter_size, filter_sigma)
    blur = functools.partial(_filter_valid, taps=taps)
    mu_x, mu_y = blur(x), blur(y)  # [B*C, H', W', 1]
    # (Co)variances are shift-invariant: take them from images centred on their own mean, which
    # keeps the float32 cancellation in E[x^2] - E[x]^2 small (0 for constant images).
    xc = x - jnp.mean(x, axis=(1, 2), keepdims=True)
    yc = y - jnp.mean(y, axis=(1, 2), keepdims=True)
    mu_xc, mu_yc = blur(xc), blur(yc)
    var_x = blur(xc * xc) - mu_xc**2
    var_y = blur(yc * yc) - mu_yc**2
    cov_xy = blur(xc * yc) - mu_xc * mu_yc
    c1, c2 = (k1 * max_value) ** 2, (k2 * max_value) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))  # [B*C, H', W', 1]
    return jnp.mean(ssim_map.reshape(b, -1), axis=1)  # [B]


def ssim(
    x: ArrayLike,
    y: ArrayLike,
    *,
    max_value: float = 1.0,
    filter_size: int = 11,
    filter_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> jax.Array:
    """Mean SSIM (2) per image with a Gaussian window: [B, H, W, C] x2 -> [B]."""
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    _check_pair(x, y, "ssim")
    if filter_size < 1 or filter_size > min(x.shape[1], x.shape[2]):
        raise ValueError(f"ssim filter_size={filter_size} must be in 1..min(H, W) = "
                         f"{min(x.shape[1], x.shape[2])} for images {x.shape[1]}x{x.shape[2]}; "
                         "for 8x8 digits use e.g. filter_size=7, filter_sigma=0.8")
    return _ssim(x, y, max_value, filter_size, filter_sigma, k1, k2)
