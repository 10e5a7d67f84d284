"""PixelRNN with Row LSTM layers (van den Oord et al. 2016, "Pixel Recurrent Neural Networks",
section 3.1), for grayscale images (C = 1).

``net(x [B, H, W, 1], label) -> raw [B, H, W, 1, P]``:

1. A 7x7 masked convolution of type A (it sees the rows above and the pixels to the left in the
   current row, not the pixel itself) maps the rescaled input to ``features`` channels; with
   ``num_classes`` > 0 a learned class embedding is added to it.
2. ``num_layers`` Row LSTM layers, each with a residual connection: the layer reads the whole
   image one row at a time (a ``lax.scan`` over rows), with the gates of row i

       [o_i, f_i, i_i, g_i] = sigma(K^ss (*) h_{i-1} + K^is (*) x_i),                    (3)
       c_i = f_i . c_{i-1} + i_i . g_i,        h_i = o_i . tanh(c_i),

   sigma the logistic sigmoid for o, f, i and tanh for g. The input-to-state K^is (*) x_i is a
   1 x k masked convolution of type B along the row (pixel j sees columns j - k//2 .. j of its
   own features, which by induction depend only on earlier pixels), computed for all rows at
   once before the scan; the state-to-state K^ss (*) h_{i-1} is a 1-D convolution of kernel 3
   over the previous row's hidden state (unmasked: every pixel of row i - 1 precedes row i).
   The layer's output is ``x + Dense(h)`` (a 1x1 convolution back to ``features``).
3. Two 1x1 convolutions (ReLU before each) to the P parameters of each pixel.

The receptive field is triangular (the paper's figure 4): pixel (i, j) sees a cone that widens
by one column per row upwards, not every earlier pixel (the Diagonal BiLSTM does). The tests
check causality (no dependence on the pixel itself or any later pixel), not completeness.
Colour images would need channel-group masks in the convolutions and a split of the LSTM state
into three groups (R, G given R, B given R and G); this module refuses C != 1.

Sampling uses the family's naive sampler (:func:`gmzoo.families.autoregressive.sampling.
naive_sample`): the whole network re-run for every pixel.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def causal_mask(kernel_shape: tuple[int, int], mask_type: str) -> np.ndarray:
    """``[kh, kw, 1, 1]`` float32: 1 on the rows above the centre and, in the centre row, on
    the columns left of the centre (type A) or left of and at the centre (type B)."""
    kh, kw = kernel_shape
    mask = np.zeros((kh, kw), np.float32)
    mask[:kh // 2] = 1.0
    mask[kh // 2, :kw // 2 + (mask_type == "B")] = 1.0
    return mask[:, :, None, None]


class MaskedConv(nn.Module):
    """A 'SAME' convolution whose kernel is multiplied by :func:`causal_mask` on every call
    (never masked once in place: weight decay would regrow the masked weights)."""

    features: int
    kernel_size: tuple[int, int]
    mask_type: str  # "A" or "B"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (kh, kw, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        kernel = kernel * jnp.asarray(causal_mask(self.kernel_size, self.mask_type))
        y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + bias  # [B, H, W, features]


class RowLSTM(nn.Module):
    """One Row LSTM layer with its residual connection: ``[B, H, W, F] -> [B, H, W, F]``
    (equation (3) of the module docstring), ``hidden`` state channels."""

    hidden: int
    kernel_size: int = 3

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, height, width, features = x.shape
        n = self.hidden
        gates_in = MaskedConv(4 * n, (1, self.kernel_size), "B", name="input_to_state")(x)
        state_kernel = self.param("state_to_state", nn.initializers.lecun_normal(),
                                  (3, n, 4 * n))  # [taps, hidden, 4 hidden]

        def row(carry, gates_row):  # gates_row [B, W, 4n]
            h_prev, c_prev = carry  # [B, W, n] each
            padded = jnp.pad(h_prev, ((0, 0), (1, 1), (0, 0)))  # [B, W + 2, n]
            gates = gates_row + sum(padded[:, t:t + width] @ state_kernel[t] for t in range(3))
            o, f, i = (jax.nn.sigmoid(gates[..., q * n:(q + 1) * n]) for q in range(3))
            g = jnp.tanh(gates[..., 3 * n:])
            c = f * c_prev + i * g
            h = o * jnp.tanh(c)
            return (h, c), h

        zeros = jnp.zeros((b, width, n), x.dtype)
        _, hs = jax.lax.scan(row, (zeros, zeros), jnp.swapaxes(gates_in, 0, 1))  # [H, B, W, n]
        return x + nn.Dense(features, name="residual")(jnp.swapaxes(hs, 0, 1))


class PixelRNN(nn.Module):
    """``net(x [B, H, W, 1], label [B] | None) -> raw [B, H, W, 1, P]``: the Row LSTM PixelRNN
    of the module docstring. ``x`` holds levels 0..num_levels-1 (rescaled to [-1, 1] here);
    ``num_params`` is the likelihood's P."""

    num_levels: int
    num_params: int
    features: int = 32
    hidden: int = 32
    num_layers: int = 2
    kernel_size: int = 3
    first_kernel: int = 7
    num_classes: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, label: jax.Array | None = None) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != 1:
            raise ValueError(f"PixelRNN takes grayscale images [B, H, W, 1], got x of shape "
                             f"{tuple(x.shape)} (colour needs channel-group masks it lacks)")
        h = 2.0 * x.astype(jnp.float32) / (self.num_levels - 1) - 1.0  # [B, H, W, 1]
        k = self.first_kernel
        h = MaskedConv(self.features, (k, k), "A", name="input_conv")(h)  # [B, H, W, F]
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
            h = RowLSTM(self.hidden, self.kernel_size, name=f"row_lstm_{i}")(h)
        h = nn.Dense(self.features, name="out_1")(nn.relu(h))
        raw = nn.Dense(self.num_params, name="out_2")(nn.relu(h))  # [B, H, W, P]
        return raw[:, :, :, None, :].astype(jnp.float32)  # [B, H, W, 1, P]
