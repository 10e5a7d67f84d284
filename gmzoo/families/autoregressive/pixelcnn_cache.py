"""Cached samplers of :class:`~gmzoo.families.autoregressive.pixelcnn.PixelCNN` and
:class:`~gmzoo.families.autoregressive.pixelcnn.GatedPixelCNN`: each step draws one dimension
with one pixel's work per layer instead of a whole forward pass (fast-pixel-cnn, Ramachandran et
al. 2017; PITFALLS: "PixelCNN caches the rows of the vertical stack and runs the horizontal
stack one pixel at a time").

Both are ``lax.scan`` over the H rows with an inner ``lax.scan`` over the row's W * C dimensions
(pixels, then channels R, G, B), with the per-dimension keys as scan inputs:
``keys = jax.random.split(key, H * W * C)``, dimension d = (i * W + j) * C + c drawn with
``keys[d]``, as the naive sampler does, so both give the same samples to float tolerance.

- Plain PixelCNN: per layer a buffer of its input's last n // 2 + 1 rows (the rows a masked
  n x n kernel reaches), padded by n // 2 columns. A step evaluates every layer at pixel (i, j)
  on its n // 2 + 1 by n window and writes the result into the next layer's buffer; at the end
  of a row the buffers move up one row.
- Gated PixelCNN: the vertical stack depends on rows <= i - 1 only (it reaches the horizontal
  stack shifted down), so once per row it advances by one row per layer (a buffer of each
  layer's last n // 2 + 1 input rows) and hands the next row its links ``v_pre [B, W, 2F]``;
  within the row the horizontal stack runs one pixel at a time from a buffer of each layer's
  input on that row.

Channels: at step (j, c) pixel j is recomputed with channels < c drawn; nothing at pixel j
depends on its own last channel (type-A masks), so the features written at c = C - 1 are final.
A sampler takes ``x_init [B, H, W, C]`` (shape only, as the family's samplers do), the module and
its params (``variables["params"]``), and ``draw(key, raw_d [B, P], temperature) -> [B]``. The
gated sampler also takes a spatial ``cond [B, H, W, E]`` (``cond_channels`` E > 0): row i of it
goes with the vertical stack's advance past row i, pixel (i, j) with the horizontal step there.
With ``input_embedding`` its buffers hold the embedded levels (E features) instead of the scaled
ones.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from gmzoo.families.autoregressive.pixelcnn import (GatedPixelCNN, PixelCNN, check_cond,
                                                   scale_input)
from gmzoo.families.autoregressive.sampling import check_sampler_inputs

DrawFn = Callable[[jax.Array, jax.Array, float], jax.Array]


def _check(module: PixelCNN | GatedPixelCNN, x_init: jax.Array, temperature: float) -> None:
    check_sampler_inputs(x_init, temperature)
    if x_init.ndim != 4 or x_init.shape[-1] != module.num_channels:
        raise ValueError(f"x_init has shape {tuple(x_init.shape)}; {type(module).__name__} "
                         f"samples [B, H, W, {module.num_channels}]")


def _row_keys(key: jax.Array, x_init: jax.Array) -> jax.Array:
    b, h, w, c = x_init.shape
    return jax.random.split(key, h * w * c).reshape(h, w * c)  # keys[d], d = (i W + j) C + c


def _draw_pixel(x: jax.Array, raw: jax.Array, i: jax.Array, t: jax.Array, key: jax.Array,
                draw: DrawFn, temperature: float) -> tuple[jax.Array, jax.Array]:
    """Draws channel c = t % C of pixel (i, j = t // C) from ``raw [B, C, P]``: the new x and
    the pixel's values ``[B, C]``."""
    c_count = x.shape[-1]
    j, c = t // c_count, t % c_count
    value = draw(key, jax.lax.dynamic_index_in_dim(raw, c, axis=1, keepdims=False), temperature)
    x = x.at[:, i, j, c].set(value.astype(x.dtype))  # [B, H, W, C]
    return x, x[:, i, j]


def pixelcnn_sample(module: PixelCNN, params: Any, key: jax.Array, x_init: jax.Array, *,
                    draw: DrawFn, temperature: float,
                    label: jax.Array | None = None) -> jax.Array:
    """Samples ``x [B, H, W, C]`` from a plain PixelCNN, one pixel's work per layer per step."""
    _check(module, x_init, temperature)
    b, height, width, channels = x_init.shape
    p0 = module.first_kernel // 2
    buffers = [jnp.zeros(s, jnp.float32) for s in module.buffer_shapes(b, width)]

    def row_step(carry, inputs):
        x, buffers = carry
        i, keys = inputs  # keys [W * C]

        def dim_step(inner, inputs):
            x, buffers = inner
            t, k = inputs
            raw, buffers = module.apply({"params": params}, buffers, t // channels, label,
                                        method=PixelCNN.pixel)  # [B, C, P]
            x, pixel = _draw_pixel(x, raw, i, t, k, draw, temperature)
            buffers[0] = jax.lax.dynamic_update_slice(  # the image row, column j
                buffers[0], scale_input(pixel, module.num_levels)[:, None, None],
                (0, p0, t // channels + p0, 0))
            return (x, buffers), None

        (x, buffers), _ = jax.lax.scan(dim_step, (x, buffers),
                                       (jnp.arange(width * channels), keys))
        buffers = [jnp.concatenate([u[:, 1:], jnp.zeros_like(u[:, :1])], axis=1)
                   for u in buffers]  # rows move up; the new row is zero padding
        return (x, buffers), None

    x = jnp.asarray(x_init, jnp.float32)
    (x, _), _ = jax.lax.scan(row_step, (x, buffers),
                             (jnp.arange(height), _row_keys(key, x_init)))
    return x


def gated_pixelcnn_sample(module: GatedPixelCNN, params: Any, key: jax.Array,
                          x_init: jax.Array, *, draw: DrawFn, temperature: float,
                          label: jax.Array | None = None,
                          cond: jax.Array | None = None) -> jax.Array:
    """Samples ``x [B, H, W, C]`` from a gated PixelCNN: the vertical stack one row per layer
    per image row, the horizontal stack one pixel per layer per step; ``cond [B, H, W, E]``
    with ``cond_channels`` E > 0 (the full forward's ``cond``)."""
    _check(module, x_init, temperature)
    check_cond(module, cond, x_init.shape[1:3])
    b, height, width, channels = x_init.shape
    f = module.features
    v_buffers = [jnp.zeros(s, jnp.float32) for s in module.vertical_buffer_shapes(b, width)]
    links = [jnp.zeros((b, width, 2 * f), jnp.float32)] * module.num_layers  # row -1: padding
    h_shapes = module.horizontal_buffer_shapes(b, width)
    p0 = module.first_kernel // 2

    def row_step(carry, inputs):
        x, v_buffers, links = carry
        i, keys = inputs  # keys [W * C]
        cond_row = None if cond is None else jax.lax.dynamic_index_in_dim(
            cond, i, axis=1, keepdims=False)  # [B, W, E]

        def dim_step(inner, inputs):
            x, h_buffers = inner
            t, k = inputs
            j = t // channels
            cond_pixel = None if cond_row is None else jax.lax.dynamic_index_in_dim(
                cond_row, j, axis=1, keepdims=False)  # [B, E]
            raw, h_buffers = module.apply({"params": params}, h_buffers, links, j, label,
                                          cond_pixel, method=GatedPixelCNN.pixel)  # [B, C, P]
            x, pixel = _draw_pixel(x, raw, i, t, k, draw, temperature)
            pixel_in = module.apply({"params": params}, pixel,
                                    method=GatedPixelCNN.inputs)  # [B, C or E]
            h_buffers[0] = jax.lax.dynamic_update_slice(  # the image row, column j
                h_buffers[0], pixel_in[:, None, None], (0, 0, j + p0, 0))
            return (x, h_buffers), None

        h_buffers = [jnp.zeros(s, jnp.float32) for s in h_shapes]  # left padding
        (x, _), _ = jax.lax.scan(dim_step, (x, h_buffers), (jnp.arange(width * channels), keys))
        x_row = jax.lax.dynamic_index_in_dim(x, i, axis=1, keepdims=False)  # [B, W, C]
        v_buffers, links = module.apply({"params": params}, v_buffers, x_row, label, cond_row,
                                        method=GatedPixelCNN.advance_rows)
        return (x, v_buffers, links), None

    x = jnp.asarray(x_init, jnp.float32)
    (x, _, _), _ = jax.lax.scan(row_step, (x, v_buffers, links),
                                (jnp.arange(height), _row_keys(key, x_init)))
    return x
