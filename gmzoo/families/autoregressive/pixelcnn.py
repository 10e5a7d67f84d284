"""PixelCNN (van den Oord et al. 2016a, "Pixel Recurrent Neural Networks", sec. 3.4) and the
gated PixelCNN (van den Oord et al. 2016b, "Conditional Image Generation with PixelCNN
Decoders", sec. 2.1-2.3): ``net(x [B, H, W, C], label=None) -> raw [B, H, W, C, P]``, the gated
one also ``net(x, label=None, cond=cond [B, H, W, E])``.

Masked convolutions (2016a, Fig. 4). Pixel (i, j) of the output sees the input pixels before it
in raster order, and at the centre pixel a channel-group mask: the features are split into C
contiguous groups (feature f of F is in group ``f * C // F``; input channel c is group c, so R,
then G given R, then B given R and G); an output of group c sees the centre's input groups < c
(type A, the first layer) or <= c (type B, every later layer). With C = 1, type A drops the
centre and type B keeps it. Masks are applied as ``kernel * mask`` on every call.

:class:`PixelCNN`: a type-A ``first_kernel`` conv, ``num_layers`` residual blocks (ReLU, type-B
``kernel`` conv, ReLU, type-B 1x1, added back), then ReLU, 1x1 type B, ReLU, 1x1 type B to C * P
outputs. Its receptive field has a blind spot up and to the right (pixel (i - 1, j + 4) is never
seen from (i, j) with a 7x7 first layer).

:class:`GatedPixelCNN` (2016b, eq. 2-4 and Fig. 2), no blind spot. Per layer k:

    v_pre = W_v * v + V_v e_y                 (vertical stack: rows <= i, all columns near j)
    h_pre = W_h * h + U (shift_down v_pre) + V_h e_y      (link taken before the gate)
    v <- tanh(v_pre[:F]) * sigmoid(v_pre[F:]),  g = tanh(h_pre[:F]) * sigmoid(h_pre[F:])
    out = W_o g (1x1),  h <- h + out (k > 0; out at k = 0),  skip <- skip + out

The vertical stack is an (n // 2 + 1) x n convolution padded above (it sees its own row, and
reaches the horizontal stack only shifted down by one row); the horizontal stack is a
1 x (n // 2 + 1) convolution padded on the left, whose centre tap carries the channel-group
mask (type A at k = 0). 1x1 convolutions inside the stacks keep their centre (type B), so
nothing is masked away [PITFALLS: anantzoid/Conditional-PixelCNN-decoder#6, #9]. The output
is ReLU, 1x1 type B, ReLU, 1x1 type B of the skip sum. A label (``num_classes > 0``) enters as a
learned embedding added to every pre-activation.

Spatial conditioning of the gated PixelCNN (2016b, eq. 5; ``cond_channels`` E > 0): a map
``cond [B, H, W, E]`` at the image's own size (e.g. VQ-VAE-2's top codes, embedded and upsampled
by the caller) enters every gated layer of both stacks through unmasked 1x1 convolutions,

    v_pre += V_v cond,    h_pre += V_h cond      (V_k = [V_v, V_h]: [E, 4F], no bias),

so s = m(h) is location dependent: pixel (i, j) of a stack gets cond[i, j] (the vertical stack's
reaches the horizontal one at row i + 1 through the link). cond is observed whole, so it needs
no mask, and x stays causal: cond's path never touches x.

Code-embedding input of the gated PixelCNN (``input_embedding`` E > 0, one channel only):
the integer level x in [0, L) enters as a learned ``nn.Embed(L, E)`` row instead of the
scaled scalar 2x / (L - 1) - 1 (codes of a VQ-VAE are unordered categories).

Both modules also expose the incremental pieces their cached samplers
(:mod:`gmzoo.families.autoregressive.pixelcnn_cache`) run: the same layers, on windows of
cached rows, so the cached and the full forward share every weight and mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Padding = tuple[tuple[int, int], tuple[int, int]]
VALID: Padding = ((0, 0), (0, 0))


def scale_input(x: jax.Array, num_levels: int) -> jax.Array:
    """Levels 0..L-1 (binary: 0/1) to [-1, 1]."""
    return 2.0 * x.astype(jnp.float32) / (num_levels - 1) - 1.0


def channel_groups(num_features: int, num_channels: int, repeat: int = 1) -> np.ndarray:
    """Group of each feature: ``repeat`` contiguous blocks, each split into C contiguous groups
    (``repeat=2`` for a gate's [tanh half, sigmoid half]): ``[num_features]``."""
    per = num_features // repeat
    return (np.arange(num_features) % per) * num_channels // per


def causal_mask(kernel_shape: Sequence[int], centre: tuple[int, int], mask_type: str,
                groups_in: np.ndarray, groups_out: np.ndarray) -> np.ndarray:
    """``[kh, kw, I, O]`` mask: taps before ``centre`` in raster order are kept, taps after it
    dropped, and the centre tap keeps input group g for output group c when g < c (type A) or
    g <= c (type B)."""
    kh, kw = kernel_shape[:2]
    rows, cols = np.arange(kh)[:, None], np.arange(kw)[None, :]
    before = (rows < centre[0]) | ((rows == centre[0]) & (cols < centre[1]))  # [kh, kw]
    mask = np.broadcast_to(before[:, :, None, None], tuple(kernel_shape)).astype(np.float32)
    mask = mask.copy()
    if mask_type == "A":
        mask[centre] = groups_in[:, None] < groups_out[None, :]
    else:
        mask[centre] = groups_in[:, None] <= groups_out[None, :]
    return mask


class MaskedConv(nn.Module):
    """A convolution with explicit padding and, unless ``mask_type`` is None, a causal
    channel-group mask (:func:`causal_mask`) multiplied into the kernel on every call."""

    features: int
    kernel_size: tuple[int, int]
    mask_type: str | None = None  # "A", "B" or None
    centre: tuple[int, int] | None = None  # default: the kernel's middle
    num_channels: int = 1
    output_blocks: int = 1  # outputs in contiguous blocks, each split into the C groups: 2
    # for a gate's [tanh half, sigmoid half], 4 for an LSTM's [o, f, i, g]
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, padding: Padding) -> jax.Array:
        fin = x.shape[-1]
        shape = (*self.kernel_size, fin, self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape)
        if self.mask_type is not None:
            if self.mask_type not in ("A", "B"):
                raise ValueError(f"mask_type={self.mask_type!r}; choose 'A', 'B' or None")
            centre = self.centre or (self.kernel_size[0] // 2, self.kernel_size[1] // 2)
            groups_out = channel_groups(self.features, self.num_channels, self.output_blocks)
            mask = causal_mask(shape, centre, self.mask_type,
                               channel_groups(fin, self.num_channels), groups_out)
            kernel = kernel * jnp.asarray(mask)
        y = jax.lax.conv_general_dilated(x.astype(jnp.float32), kernel, (1, 1), padding,
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


def _gate(pre: jax.Array) -> jax.Array:
    """tanh(a) * sigmoid(b) of ``pre = [a, b]`` (2016b, eq. 2)."""
    a, b = jnp.split(pre, 2, axis=-1)
    return jnp.tanh(a) * jax.nn.sigmoid(b)


def fields_error(module: nn.Module) -> str | None:
    """Why ``module``'s fields cannot build a network, or None."""
    name = type(module).__name__
    n0, n = module.first_kernel, module.kernel
    if min(n0, n) < 1 or (n0 * n) % 2 == 0:
        return (f"{name} kernels must be odd sizes, got first_kernel={module.first_kernel}, "
                f"kernel={module.kernel}")
    if module.features < module.num_channels:
        return (f"{name} needs features >= num_channels ({module.num_channels}) so every "
                f"channel group has features, got features={module.features}")
    minimum = 1 if isinstance(module, GatedPixelCNN) else 0
    if module.num_layers < minimum:
        return f"{name} needs num_layers >= {minimum}, got {module.num_layers}"
    if isinstance(module, GatedPixelCNN):
        if module.cond_channels < 0 or module.input_embedding < 0:
            return (f"{name} needs cond_channels >= 0 and input_embedding >= 0 (0: off), got "
                    f"cond_channels={module.cond_channels}, "
                    f"input_embedding={module.input_embedding}")
        if module.input_embedding > 0 and module.num_channels != 1:
            return (f"{name} embeds the input (input_embedding={module.input_embedding}) only "
                    f"for one-channel images, got num_channels={module.num_channels}")
    return None


def _check_fields(module: nn.Module) -> None:
    why = fields_error(module)
    if why is not None:
        raise ValueError(why)


def _check_label(module: nn.Module, label: jax.Array | None) -> None:
    if module.num_classes > 0 and label is None:
        raise ValueError(f"this model is class-conditional (num_classes={module.num_classes}): "
                         "pass label [B]")
    if module.num_classes == 0 and label is not None:
        raise ValueError("this model is unconditional (num_classes=0): pass label=None")


def _check_input(module: nn.Module, x: jax.Array) -> None:
    if x.ndim != 4 or x.shape[-1] != module.num_channels:
        raise ValueError(f"{type(module).__name__} takes x [B, H, W, {module.num_channels}], "
                         f"got shape {tuple(x.shape)}")


def check_cond(module: nn.Module, cond: jax.Array | None,
               spatial: tuple[int, ...] | None = None) -> None:
    """Refuses a cond the module was not built for (``cond_channels`` E; 0: none), or one whose
    spatial shape is not ``spatial`` (the image's [H, W] when given)."""
    e = module.cond_channels
    if e > 0 and cond is None:
        raise ValueError(f"this model is spatially conditioned (cond_channels={e}): pass "
                         f"cond [B, H, W, {e}]")
    if e == 0 and cond is not None:
        raise ValueError("this model has no spatial conditioning (cond_channels=0): pass "
                         "cond=None, or build it with cond_channels=E")
    if cond is not None and (cond.shape[-1] != e or cond.ndim < 3 or (
            spatial is not None and tuple(cond.shape[1:-1]) != tuple(spatial))):
        where = "" if spatial is None else f" (x's H, W = {tuple(spatial)})"
        raise ValueError(f"cond has shape {tuple(cond.shape)}; this model takes cond "
                         f"[B, H, W, {e}]{where}")


class PixelCNN(nn.Module):
    """The plain PixelCNN of masked convolutions (2016a, sec. 3.4): ``x [B, H, W, C]`` with
    ``C = num_channels`` -> ``raw [B, H, W, C, num_params]``."""

    features: int = 64
    num_layers: int = 7
    num_params: int = 1
    num_levels: int = 2
    num_classes: int = 0
    num_channels: int = 1
    first_kernel: int = 7
    kernel: int = 3

    def setup(self) -> None:
        _check_fields(self)
        f, c, n0, n = self.features, self.num_channels, self.first_kernel, self.kernel
        self.first = MaskedConv(f, (n0, n0), "A", num_channels=c)
        self.convs = [MaskedConv(f, (n, n), "B", num_channels=c) for _ in range(self.num_layers)]
        self.pointwise = [MaskedConv(f, (1, 1), "B", num_channels=c)
                          for _ in range(self.num_layers)]
        self.head = [MaskedConv(f, (1, 1), "B", num_channels=c),
                     MaskedConv(c * self.num_params, (1, 1), "B", num_channels=c)]
        if self.num_classes > 0:
            self.embeds = [nn.Embed(self.num_classes, f) for _ in range(self.num_layers + 1)]

    def _embed(self, k: int, label: jax.Array | None) -> jax.Array | float:
        if label is None:
            return 0.0
        return self.embeds[k](label)[:, None, None, :]  # [B, 1, 1, F]

    def _first(self, xs: jax.Array, padding: Padding, label: jax.Array | None) -> jax.Array:
        return self.first(xs, padding) + self._embed(0, label)

    def _block(self, k: int, h: jax.Array, padding: Padding,
               label: jax.Array | None) -> jax.Array:
        """Residual increment of block k: 1x1(relu(conv(relu(h)) + e_y))."""
        a = self.convs[k](nn.relu(h), padding) + self._embed(k + 1, label)
        return self.pointwise[k](nn.relu(a), VALID)

    def _head(self, h: jax.Array) -> jax.Array:
        out = self.head[1](nn.relu(self.head[0](nn.relu(h), VALID)), VALID)
        return out.reshape(*out.shape[:-1], self.num_channels, self.num_params)

    def __call__(self, x: jax.Array, label: jax.Array | None = None) -> jax.Array:
        _check_input(self, x)
        _check_label(self, label)
        p0, p = self.first_kernel // 2, self.kernel // 2
        h = self._first(scale_input(x, self.num_levels), ((p0, p0), (p0, p0)), label)
        for k in range(self.num_layers):
            h = h + self._block(k, h, ((p, p), (p, p)), label)  # [B, H, W, F]
        return self._head(h)  # [B, H, W, C, P]

    # ---- the incremental forward of the cached sampler --------------------------------------
    def buffer_shapes(self, batch: int, width: int) -> list[tuple[int, ...]]:
        """Shapes of the row buffers: layer k's input, rows i - n // 2 .. i, padded by n // 2
        columns each side (layer 0: the scaled image, then each block's input)."""
        n0, n = self.first_kernel, self.kernel
        shapes = [(batch, n0 // 2 + 1, width + 2 * (n0 // 2), self.num_channels)]
        shapes += [(batch, n // 2 + 1, width + 2 * (n // 2), self.features)] * self.num_layers
        return shapes

    def pixel(self, buffers: list[jax.Array], j: jax.Array,
              label: jax.Array | None = None) -> tuple[jax.Array, list[jax.Array]]:
        """raw ``[B, C, P]`` at column j of the buffers' last row, and the buffers with every
        block's input at that pixel written in: one pixel's work per layer."""
        _check_label(self, label)
        buffers = list(buffers)
        n0, n = self.first_kernel, self.kernel
        window = jax.lax.dynamic_slice_in_dim(buffers[0], j, n0, axis=2)  # [B, n0//2+1, n0, C]
        h = self._first(window, ((0, n0 // 2), (0, 0)), label)  # [B, 1, 1, F]
        for k in range(self.num_layers):
            buffers[k + 1] = jax.lax.dynamic_update_slice(  # into the last row, column j
                buffers[k + 1], h, (0, n // 2, j + n // 2, 0))
            window = jax.lax.dynamic_slice_in_dim(buffers[k + 1], j, n, axis=2)  # [B,p+1,n,F]
            h = h + self._block(k, window, ((0, n // 2), (0, 0)), label)  # [B, 1, 1, F]
        return self._head(h)[:, 0, 0], buffers


class GatedPixelCNN(nn.Module):
    """The gated PixelCNN (2016b): vertical and horizontal stacks, no blind spot,
    ``x [B, H, W, C]`` with ``C = num_channels`` -> ``raw [B, H, W, C, num_params]``."""

    features: int = 64
    num_layers: int = 8
    num_params: int = 1
    num_levels: int = 2
    num_classes: int = 0
    num_channels: int = 1
    first_kernel: int = 7
    kernel: int = 3
    cond_channels: int = 0  # E of cond [B, H, W, E]: spatial conditioning (0: none)
    input_embedding: int = 0  # E: levels embedded by nn.Embed(num_levels, E) (0: scaled)

    def _size(self, k: int) -> int:
        return self.first_kernel if k == 0 else self.kernel

    def setup(self) -> None:
        _check_fields(self)
        f, c = self.features, self.num_channels
        sizes = [self._size(k) for k in range(self.num_layers)]
        self.v_convs = [MaskedConv(2 * f, (n // 2 + 1, n)) for n in sizes]
        self.h_convs = [MaskedConv(2 * f, (1, n // 2 + 1), "A" if k == 0 else "B",
                                   centre=(0, n // 2), num_channels=c, output_blocks=2)
                        for k, n in enumerate(sizes)]
        # the vertical stack sees only rows above once shifted: no channel mask on the link
        self.links = [MaskedConv(2 * f, (1, 1), use_bias=False) for _ in sizes]
        self.h_outs = [MaskedConv(f, (1, 1), "B", num_channels=c) for _ in sizes]
        self.head = [MaskedConv(f, (1, 1), "B", num_channels=c),
                     MaskedConv(c * self.num_params, (1, 1), "B", num_channels=c)]
        if self.num_classes > 0:
            self.embeds = [nn.Embed(self.num_classes, 4 * f) for _ in sizes]
        if self.cond_channels > 0:  # V_k = [V_v, V_h], unmasked 1x1 convolutions of cond
            self.cond_projs = [nn.Dense(4 * f, use_bias=False) for _ in sizes]
        if self.input_embedding > 0:
            self.input_embed = nn.Embed(self.num_levels, self.input_embedding)

    def _embed(self, k: int, label: jax.Array | None,
               cond: jax.Array | None = None) -> tuple[jax.Array | float, ...]:
        """Layer k's conditioning terms (vertical, horizontal), each ``[B, 1, 1, 2F]`` (label)
        or the shape of ``cond [B, h, w, E]`` with 2F features (a cond window): V e_y +
        V cond."""
        if label is None:
            e_v, e_h = 0.0, 0.0
        else:
            e = self.embeds[k](label)[:, None, None, :]  # [B, 1, 1, 4F]
            e_v, e_h = e[..., :2 * self.features], e[..., 2 * self.features:]
        if cond is not None:
            s = self.cond_projs[k](cond.astype(jnp.float32))  # [B, h, w, 4F]
            e_v, e_h = e_v + s[..., :2 * self.features], e_h + s[..., 2 * self.features:]
        return e_v, e_h

    def inputs(self, x: jax.Array) -> jax.Array:
        """The first layer's input from levels ``x [..., C]``: the scaled levels 2x / (L - 1) - 1
        ``[..., C]``, or with ``input_embedding`` E > 0 (C = 1) the learned embedding of the
        level ``[..., E]``."""
        if self.input_embedding == 0:
            return scale_input(x, self.num_levels)
        level = jnp.clip(jnp.round(x[..., 0]), 0, self.num_levels - 1).astype(jnp.int32)
        return self.input_embed(level).astype(jnp.float32)  # [..., E]

    def _input_features(self) -> int:
        return self.input_embedding or self.num_channels

    def _vertical(self, k: int, v: jax.Array, padding: Padding, label: jax.Array | None,
                  cond: jax.Array | None = None) -> jax.Array:
        return self.v_convs[k](v, padding) + self._embed(k, label, cond)[0]  # v_pre [.., 2F]

    def _horizontal(self, k: int, h: jax.Array, link_pre: jax.Array, padding: Padding,
                    label: jax.Array | None, cond: jax.Array | None = None) -> jax.Array:
        """``out`` of layer k (before the residual): W_o gate(W_h * h + U link + V_h e_y
        + V_h cond)."""
        pre = self.h_convs[k](h, padding) + self.links[k](link_pre, VALID)
        return self.h_outs[k](_gate(pre + self._embed(k, label, cond)[1]), VALID)

    def _head(self, skip: jax.Array) -> jax.Array:
        out = self.head[1](nn.relu(self.head[0](nn.relu(skip), VALID)), VALID)
        return out.reshape(*out.shape[:-1], self.num_channels, self.num_params)

    def __call__(self, x: jax.Array, label: jax.Array | None = None, *,
                 cond: jax.Array | None = None) -> jax.Array:
        """``x [B, H, W, C]`` levels, ``label [B]`` (``num_classes`` > 0), ``cond [B, H, W,
        E]`` (``cond_channels`` E > 0) -> ``raw [B, H, W, C, P]``."""
        _check_input(self, x)
        _check_label(self, label)
        check_cond(self, cond, x.shape[1:3])
        v = h = self.inputs(x)  # [B, H, W, C] scaled, or [B, H, W, E] embedded
        skip = 0.0
        for k in range(self.num_layers):
            p = self._size(k) // 2
            v_pre = self._vertical(k, v, ((p, 0), (p, p)), label, cond)  # [B,H,W,2F], rows <= i
            link = jnp.pad(v_pre, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]  # rows < i
            out = self._horizontal(k, h, link, ((0, 0), (p, 0)), label, cond)  # [B, H, W, F]
            h = out if k == 0 else h + out
            v = _gate(v_pre)
            skip = skip + out
        return self._head(skip)  # [B, H, W, C, P]

    # ---- the incremental forward of the cached sampler --------------------------------------
    def vertical_buffer_shapes(self, batch: int, width: int) -> list[tuple[int, ...]]:
        """Per layer, its vertical input's last n // 2 + 1 rows: ``[B, n // 2 + 1, W, F_in]``
        (F_in of layer 0: C, or E with ``input_embedding``)."""
        return [(batch, self._size(k) // 2 + 1, width,
                 self._input_features() if k == 0 else self.features)
                for k in range(self.num_layers)]

    def horizontal_buffer_shapes(self, batch: int, width: int) -> list[tuple[int, ...]]:
        """Per layer, its horizontal input on the current row, padded by n // 2 columns on the
        left: ``[B, 1, W + n // 2, F_in]``."""
        return [(batch, 1, width + self._size(k) // 2,
                 self._input_features() if k == 0 else self.features)
                for k in range(self.num_layers)]

    def advance_rows(self, buffers: list[jax.Array], x_row: jax.Array,
                     label: jax.Array | None = None, cond_row: jax.Array | None = None
                     ) -> tuple[list[jax.Array], list[jax.Array]]:
        """Pushes the finished row ``x_row [B, W, C]`` through the vertical stack, one row per
        layer: the updated buffers and each layer's ``v_pre`` on that row ``[B, W, 2F]`` (the
        next row's links). ``cond_row [B, W, E]``: cond on that row."""
        _check_label(self, label)
        check_cond(self, cond_row)
        cond = None if cond_row is None else cond_row[:, None]  # [B, 1, W, E]
        new_row = self.inputs(x_row)[:, None]  # [B, 1, W, C or E]
        new_buffers, links = [], []
        for k, buffer in enumerate(buffers):
            buffer = jnp.concatenate([buffer[:, 1:], new_row], axis=1)
            p = self._size(k) // 2
            v_pre = self._vertical(k, buffer, ((0, 0), (p, p)), label, cond)  # [B, 1, W, 2F]
            new_buffers.append(buffer)
            links.append(v_pre[:, 0])
            new_row = _gate(v_pre)
        return new_buffers, links

    def pixel(self, buffers: list[jax.Array], links: list[jax.Array], j: jax.Array,
              label: jax.Array | None = None, cond_pixel: jax.Array | None = None
              ) -> tuple[jax.Array, list[jax.Array]]:
        """raw ``[B, C, P]`` at column j of the current row, from the horizontal buffers and
        the previous row's ``v_pre`` (``links``), and the buffers with each layer's input at
        column j written in: one pixel's work per layer. ``cond_pixel [B, E]``: cond at the
        pixel."""
        _check_label(self, label)
        cond = None if cond_pixel is None else cond_pixel[:, None, None]  # [B, 1, 1, E]
        check_cond(self, cond)
        buffers = list(buffers)
        skip, h = 0.0, None
        for k in range(self.num_layers):
            p = self._size(k) // 2
            if k > 0:
                buffers[k] = jax.lax.dynamic_update_slice_in_dim(buffers[k], h, j + p, axis=2)
            window = jax.lax.dynamic_slice_in_dim(buffers[k], j, p + 1, axis=2)  # [B,1,p+1,Fi]
            link = jax.lax.dynamic_slice_in_dim(links[k], j, 1, axis=1)[:, None]  # [B,1,1,2F]
            out = self._horizontal(k, window, link, VALID, label, cond)  # [B, 1, 1, F]
            h = out if k == 0 else window[:, :, -1:] + out
            skip = skip + out
        return self._head(skip)[:, 0, 0], buffers
