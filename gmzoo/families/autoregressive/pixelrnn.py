"""PixelRNN (van den Oord et al. 2016, "Pixel Recurrent Neural Networks", sections 3.1-3.3 and
3.5): Row LSTM and Diagonal BiLSTM layers, for grey-scale and colour images.

``net(x [B, H, W, C], label) -> raw [B, H, W, C, P]``:

1. A ``first_kernel`` x ``first_kernel`` masked convolution of type A maps the rescaled input to
   ``features`` channels; with ``num_classes`` > 0 a learned class embedding is added to it.
2. ``num_layers`` LSTM layers (``layer="row"`` or ``"diagonal"``), each with a residual
   connection ``x + W_o h`` (a type-B 1x1 convolution). Every LSTM computes, at each position,

       [o, f, i, g] = sigma(K^ss (*) h_prev + K^is (*) x),                                 (3)
       c = f . c_prev + i . g,        h = o . tanh(c),

   sigma the logistic sigmoid for o, f, i and tanh for g; the input-to-state K^is (*) x is
   computed for every position at once before the recurrence (a ``lax.scan``).
   - **Row LSTM** (sec. 3.1): the scan runs over rows; K^is is a 1 x ``kernel`` type-B
     convolution along the row, K^ss a 1-D convolution of width 3 over the previous row's
     state. The receptive field is a triangle (the paper's figure 4): pixel (i, j) does not
     see every earlier pixel.
   - **Diagonal BiLSTM** (sec. 3.2): K^is is a type-B 1x1 convolution; the map is *skewed*
     (row i shifted right by i, width W + H - 1) so that the scan can run over the skewed
     columns, K^ss a 2 x 1 convolution over the previous column's state (rows i - 1 and i,
     i.e. the pixel above and the pixel to the left). Positions of the skewed map outside the
     image keep a zero state. A second LSTM runs on the image mirrored left to right; its
     output is mirrored back and shifted down one row (so pixel (i, j) sees rows < i of it,
     never the later pixels of its own row), and added to the first's. Because of that shift,
     the second LSTM may read everything at its own position: its K^is is an unmasked 1x1
     convolution of the features *and the rescaled input image* (without the image, the last
     pixel of row i - 1 would be out of sight of the start of row i: no position's features
     hold its own pixel). The receptive field is every earlier pixel (tested).
3. Two type-B 1x1 convolutions (ReLU before each) to the P parameters of each channel.

Colour (sec. 3.4): every mask above is a channel-group mask
(:func:`gmzoo.families.autoregressive.pixelcnn.causal_mask`: R, then G given R, then B given R
and G), and the LSTM's state and each of its four gates are split into the same C groups, so
that group c of the state at (i, j) sees the groups <= c of the current pixel's input and all
of the earlier positions' state. The recurrent K^ss is unmasked: every position it reads comes
before the current pixel in raster order.

Sampling uses the family's naive sampler (:func:`gmzoo.families.autoregressive.sampling.
naive_sample`): the whole network re-run for every dimension.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gmzoo.families.autoregressive.pixelcnn import VALID, MaskedConv, scale_input

LAYERS = ("row", "diagonal")


def _lstm_cell(gates: jax.Array, c_prev: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``gates [..., 4n]`` as [o, f, i, g] (each block split into the channel groups), the
    previous cell ``[..., n]`` -> (h, c)."""
    o, f, i, g = jnp.split(gates, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c_prev + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


class RowLSTM(nn.Module):
    """One Row LSTM (sec. 3.1): ``[B, H, W, F] -> h [B, H, W, hidden]``."""

    hidden: int
    kernel_size: int = 3
    num_channels: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, height, width, _ = x.shape
        n, k = self.hidden, self.kernel_size
        gates_in = MaskedConv(4 * n, (1, k), "B", num_channels=self.num_channels,
                              output_blocks=4, name="input_to_state")(
            x, ((0, 0), (k // 2, k // 2)))  # [B, H, W, 4n]
        state_kernel = self.param("state_to_state", nn.initializers.lecun_normal(),
                                  (3, n, 4 * n))  # [taps, hidden, 4 hidden]

        def row(carry, gates_row):  # gates_row [B, W, 4n]
            h_prev, c_prev = carry  # [B, W, n] each
            padded = jnp.pad(h_prev, ((0, 0), (1, 1), (0, 0)))  # [B, W + 2, n]
            gates = gates_row + sum(padded[:, t:t + width] @ state_kernel[t] for t in range(3))
            h, c = _lstm_cell(gates, c_prev)
            return (h, c), h

        zeros = jnp.zeros((b, width, n), jnp.float32)
        _, hs = jax.lax.scan(row, (zeros, zeros), jnp.swapaxes(gates_in, 0, 1))  # [H, B, W, n]
        return jnp.swapaxes(hs, 0, 1)


def skew(x: jax.Array) -> jax.Array:
    """``[B, H, W, F] -> [B, H, W + H - 1, F]``: row i shifted right by i, zeros around."""
    height, width = x.shape[1:3]
    rows = np.arange(height)[:, None]
    cols = np.arange(width + height - 1)[None, :] - rows  # [H, W + H - 1]: source column
    inside = (cols >= 0) & (cols < width)
    out = x[:, rows, np.clip(cols, 0, width - 1)]  # [B, H, W + H - 1, F]
    return out * jnp.asarray(inside[None, :, :, None], x.dtype)


def unskew(x: jax.Array, width: int) -> jax.Array:
    """The inverse of :func:`skew`: ``[B, H, W + H - 1, F] -> [B, H, W, F]``."""
    height = x.shape[1]
    rows = np.arange(height)[:, None]
    return x[:, rows, rows + np.arange(width)[None, :]]


class DiagonalLSTM(nn.Module):
    """One direction of the Diagonal BiLSTM (sec. 3.2), left to right:
    ``[B, H, W, F] -> h [B, H, W, hidden]``; (i, j) sees every (i', j') with i' <= i and
    j' <= j through the state, and its own input through a type-B 1x1 convolution (the
    groups <= c), or all of it when ``masked`` is False."""

    hidden: int
    num_channels: int = 1
    masked: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, height, width, _ = x.shape
        n = self.hidden
        gates_in = MaskedConv(4 * n, (1, 1), "B" if self.masked else None,
                              num_channels=self.num_channels, output_blocks=4,
                              name="input_to_state")(x, VALID)
        gates_in = skew(gates_in)  # [B, H, W + H - 1, 4n]
        state_kernel = self.param("state_to_state", nn.initializers.lecun_normal(),
                                  (2, n, 4 * n))  # [above, left]
        rows = np.arange(height)[:, None]
        inside = (np.arange(width + height - 1)[None, :] - rows >= 0) & (
            np.arange(width + height - 1)[None, :] - rows < width)  # [H, W + H - 1]

        def column(carry, inputs):  # the skewed column's gates [B, H, 4n], inside [H]
            h_prev, c_prev = carry  # [B, H, n]: the previous skewed column
            gates_col, keep = inputs
            above = jnp.pad(h_prev, ((0, 0), (1, 0), (0, 0)))[:, :height]  # row i - 1
            gates = gates_col + above @ state_kernel[0] + h_prev @ state_kernel[1]
            h, c = _lstm_cell(gates, c_prev)
            keep = keep[None, :, None]
            h, c = h * keep, c * keep  # outside the image: zero state
            return (h, c), h

        zeros = jnp.zeros((b, height, n), jnp.float32)
        _, hs = jax.lax.scan(column, (zeros, zeros),
                             (jnp.moveaxis(gates_in, 2, 0),
                              jnp.asarray(inside.T, jnp.float32)))  # [W + H - 1, B, H, n]
        return unskew(jnp.moveaxis(hs, 0, 2), width)


class DiagonalBiLSTM(nn.Module):
    """The Diagonal BiLSTM (sec. 3.2): the left-to-right :class:`DiagonalLSTM` of the
    features ``x`` plus the right-to-left one (unmasked, on the mirrored features and
    ``image``) shifted down one row: ``([B, H, W, F], [B, H, W, C]) -> [B, H, W, hidden]``."""

    hidden: int
    num_channels: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, image: jax.Array) -> jax.Array:
        left = DiagonalLSTM(self.hidden, self.num_channels, name="left_to_right")(x)
        both = jnp.concatenate([x, image], axis=-1)[:, :, ::-1]
        right = DiagonalLSTM(self.hidden, self.num_channels, masked=False,
                             name="right_to_left")(both)
        right = jnp.pad(right[:, :-1, ::-1], ((0, 0), (1, 0), (0, 0), (0, 0)))  # row i - 1
        return left + right


class PixelRNN(nn.Module):
    """``net(x [B, H, W, C], label [B] | None) -> raw [B, H, W, C, P]``: the PixelRNN of the
    module docstring with ``num_layers`` layers of kind ``layer`` (``"row"`` or
    ``"diagonal"``). ``x`` holds levels 0..num_levels-1 (rescaled to [-1, 1] here);
    ``num_params`` is the likelihood's P; ``features`` must be at least C."""

    num_levels: int
    num_params: int
    features: int = 32
    hidden: int = 32
    num_layers: int = 2
    kernel_size: int = 3
    first_kernel: int = 7
    num_classes: int = 0
    layer: str = "row"

    @nn.compact
    def __call__(self, x: jax.Array, label: jax.Array | None = None) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"PixelRNN takes images [B, H, W, C], got x of shape "
                             f"{tuple(x.shape)}")
        c = x.shape[-1]
        if self.layer not in LAYERS:
            raise ValueError(f"layer={self.layer!r}; choose one of {LAYERS}")
        if min(self.features, self.hidden) < c:
            raise ValueError(f"PixelRNN needs features and hidden >= the {c} channels (one "
                             f"group each), got features={self.features}, hidden={self.hidden}")
        k = self.first_kernel
        image = scale_input(x, self.num_levels)
        h = MaskedConv(self.features, (k, k), "A", num_channels=c, name="input_conv")(
            image, ((k // 2, k // 2), (k // 2, k // 2)))
        if self.num_classes > 0:
            if label is None:
                raise ValueError(f"PixelRNN was built with num_classes={self.num_classes} "
                                 "(class-conditional); pass a label [B]")
            emb = nn.Embed(self.num_classes, self.features, name="class_embed")
            h = h + emb(jnp.asarray(label, jnp.int32))[:, None, None]
        elif label is not None:
            raise ValueError("got a label, but PixelRNN was built with num_classes=0 "
                             "(unconditional); set num_classes to the number of classes")
        for i in range(self.num_layers):
            if self.layer == "row":
                state = RowLSTM(self.hidden, self.kernel_size, c, name=f"row_lstm_{i}")(h)
            else:
                state = DiagonalBiLSTM(self.hidden, c, name=f"diagonal_bilstm_{i}")(h, image)
            h = h + MaskedConv(self.features, (1, 1), "B", num_channels=c,
                               name=f"residual_{i}")(state, VALID)
        h = MaskedConv(self.features, (1, 1), "B", num_channels=c, name="out_1")(nn.relu(h),
                                                                                 VALID)
        raw = MaskedConv(c * self.num_params, (1, 1), "B", num_channels=c, name="out_2")(
            nn.relu(h), VALID)  # [B, H, W, C P]
        return raw.reshape(*raw.shape[:-1], c, self.num_params)
