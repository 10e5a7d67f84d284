"""WaveNet (van den Oord et al. 2016, arXiv:1609.03499): dilated causal convolutions with gated
residual and skip connections, and its cached sampler (fast-wavenet, Paine et al. 2016,
arXiv:1611.09482).

The D dimensions of ``x [B, *event]`` in raster order are one sequence x_0..x_{D-1} (a 1-D
signal ``[B, T, 1, 1]`` of :mod:`gmzoo.data.signals`, ``[B, T, 1]`` or ``[B, T]``, or an image
``[B, H, W, C]`` raster-scanned); ``raw`` is reshaped back to ``[B, *event, P]``. Output t is
p(x_t | x_<t), the contract of :mod:`gmzoo.families.autoregressive`:

- Input: each level is encoded as a one-hot vector (``embedding_dim = 0``) or a learned
  embedding row, linearly interpolated between the two neighbouring levels, e(x) = E[k] + (x -
  k) (E[k + 1] - E[k]) with k = clip(floor(x), 0, L - 2): exactly E[x] at the integer levels
  the data holds, and differentiable in x, so the Jacobian of raw w.r.t. x shows every
  dependence (a table lookup would have zero derivative everywhere).
- The causal shift: the sequence is shifted right by one (position t holds e(x_{t-1}), position
  0 zeros), then a causal convolution of width ``input_kernel_size`` (left-only padding: the
  first layer is causal too, rampage644/wavenet#5) maps it to ``residual_channels``.
- ``num_stacks`` repeats of the dilations (1, 2, 4, ...): per layer a causal convolution of
  width k = ``kernel_size`` and dilation d (y_t = sum_i K_i h_{t - (k - 1 - i) d}, zeros before
  0), and the gated unit (eq. 2; with a class, eq. 3's global conditioning V^T y)

      z = tanh(W_f * h + V_f^T y) * sigmoid(W_g * h + V_g^T y),

  a 1x1 residual output h <- h + W_r z and a 1x1 skip output W_s z (Fig. 4).
- Head: relu(sum of skips) -> 1x1 -> relu -> 1x1 -> P per position.

Receptive field (:func:`receptive_field`): output t depends on exactly the inputs x_{t-R} ..
x_{t-1}, R = (k - 1) sum(dilations) + input_kernel_size: (k - 1) sum(dilations) + 1 with the
default 1x1 input layer (the formula of the paper's Fig. 3, which counts positions before t;
the shift excludes x_t itself and adds none).

Cached sampling (:func:`wavenet_sample`): a causal convolution of width k and dilation d reads
its input at t, t - d, ..., t - (k - 1) d, so each layer keeps a queue of its last (k - 1) d
inputs, a ring buffer in the ``lax.scan`` carry (slot t mod (k - 1) d; zeros are the left
padding). One step feeds x_{t-1} through every layer once: O(layers) work per dimension
instead of a full O(D layers) pass; under the same key the samples equal the naive sampler's.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gmzoo.families.autoregressive.sampling import (DecodeFn, DrawFn, decode_raw,
                                                    decode_sample)

Cache = tuple[jax.Array, ...]  # one ring buffer per causal conv: [(k - 1) d, B, C_in]


def receptive_field(kernel_size: int, dilations: Sequence[int],
                    input_kernel_size: int = 1) -> int:
    """How many inputs output t sees, all of them before t (x_{t-R} .. x_{t-1}):
    R = (kernel_size - 1) sum(dilations) + input_kernel_size; with a 1x1 input layer the
    paper's (k - 1) sum(dilations) + 1. ``dilations`` lists every dilated layer (all stacks)."""
    return (kernel_size - 1) * sum(dilations) + input_kernel_size


class CausalConv1D(nn.Module):
    """``y_t = b + sum_{i<k} K_i x_{t - (k - 1 - i) d}`` with zeros before 0 (left-only
    padding). ``__call__(x [B, D, C_in]) -> [B, D, features]`` for the whole sequence;
    ``taps=True`` takes only the k inputs of one output, ``[B, k, C_in]`` oldest first
    (x_{t - (k - 1) d}, ..., x_t), and returns that output ``[B, features]``."""

    features: int
    kernel_size: int = 2
    dilation: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, taps: bool = False) -> jax.Array:
        k, d = self.kernel_size, self.dilation
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (k, x.shape[-1], self.features))  # [k, C_in, C_out]
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        if taps:
            return jnp.einsum("bkc,kco->bo", x, kernel) + bias  # [B, C_out]
        y = jax.lax.conv_general_dilated(x, kernel, window_strides=(1,),
                                         padding=[((k - 1) * d, 0)], rhs_dilation=(d,),
                                         dimension_numbers=("NWC", "WIO", "NWC"))
        return y + bias  # [B, D, C_out]


class WaveNet(nn.Module):
    """``net(x [B, *event], label [B] | None) -> raw [B, *event, P]`` (module docstring).
    ``num_levels`` L of the input (2 for binary data), ``num_params`` the likelihood's P;
    the dilated layers are ``dilations`` repeated ``num_stacks`` times."""

    num_levels: int
    num_params: int
    residual_channels: int = 32
    gate_channels: int = 32
    skip_channels: int = 64
    kernel_size: int = 2
    dilations: Sequence[int] = (1, 2, 4, 8, 16, 32, 64)
    num_stacks: int = 1
    input_kernel_size: int = 1
    embedding_dim: int = 0  # 0: one-hot input
    num_classes: int = 0

    @property
    def layer_dilations(self) -> tuple[int, ...]:
        """The dilation of every dilated layer, in order (``dilations`` x ``num_stacks``)."""
        return tuple(int(d) for d in self.dilations) * self.num_stacks

    @property
    def input_channels(self) -> int:
        return self.embedding_dim or self.num_levels

    def setup(self):
        why = wavenet_config_error(self)
        if why is not None:
            raise ValueError(f"WaveNet: {why}")
        if self.embedding_dim:
            self.embedding = self.param("embedding", nn.initializers.normal(1.0),
                                        (self.num_levels, self.embedding_dim))  # [L, E]
        self.input_conv = CausalConv1D(self.residual_channels, self.input_kernel_size,
                                       name="input_conv")
        n = len(self.layer_dilations)
        self.dilated = [CausalConv1D(2 * self.gate_channels, self.kernel_size, d,
                                     name=f"dilated_{i}")
                        for i, d in enumerate(self.layer_dilations)]
        if self.num_classes > 0:
            self.label_embed = nn.Embed(self.num_classes, 2 * self.gate_channels * n,
                                        name="label_embed")  # V^T y of every layer at once
        # the last layer's residual output would feed nothing: it has none
        self.residual = [nn.Dense(self.residual_channels, name=f"residual_{i}")
                         for i in range(n - 1)]
        self.skip = [nn.Dense(self.skip_channels, name=f"skip_{i}") for i in range(n)]
        self.head_hidden = nn.Dense(self.skip_channels, name="head_hidden")
        self.head = nn.Dense(self.num_params, name="head")

    def _encode(self, x: jax.Array) -> jax.Array:
        """e(x) ``[..., E]``: one-hot or embedding rows interpolated between levels."""
        low = jnp.clip(jnp.floor(x), 0, self.num_levels - 2)
        frac = (x - low)[..., None].astype(jnp.float32)
        low = low.astype(jnp.int32)
        if self.embedding_dim:
            lo, hi = self.embedding[low], self.embedding[low + 1]
        else:
            lo = jax.nn.one_hot(low, self.num_levels)
            hi = jax.nn.one_hot(low + 1, self.num_levels)
        return lo + frac * (hi - lo)

    def _conditions(self, label: jax.Array | None, batch: int) -> list[jax.Array | None]:
        """V^T y of every dilated layer, ``[B, 2G]`` each (None without classes)."""
        n = len(self.layer_dilations)
        if self.num_classes > 0:
            if label is None:
                raise ValueError(f"WaveNet was built with num_classes={self.num_classes} "
                                 "(class-conditional); pass a label [B]")
            v = self.label_embed(jnp.asarray(label, jnp.int32))  # [B, 2G n]
            return list(v.reshape(batch, n, 2 * self.gate_channels).transpose(1, 0, 2))
        if label is not None:
            raise ValueError("got a label, but WaveNet was built with num_classes=0 "
                             "(unconditional); set num_classes to the number of classes")
        return [None] * n

    def _gate(self, i: int, a: jax.Array, h: jax.Array,
              cond: jax.Array | None) -> tuple[jax.Array, jax.Array]:
        """Layer i after its dilated conv ``a [..., 2G]``: (new h, skip) (eqs. 2-3)."""
        if cond is not None:
            a = a + cond.reshape(cond.shape[:1] + (1,) * (a.ndim - 2) + cond.shape[1:])
        g = self.gate_channels
        z = jnp.tanh(a[..., :g]) * jax.nn.sigmoid(a[..., g:])  # [..., G]
        if i < len(self.residual):
            h = h + self.residual[i](z)  # [..., R]
        return h, self.skip[i](z)  # [..., S]

    def _head(self, skips: jax.Array) -> jax.Array:
        return self.head(nn.relu(self.head_hidden(nn.relu(skips)))).astype(jnp.float32)

    def __call__(self, x: jax.Array, label: jax.Array | None = None) -> jax.Array:
        b, event = x.shape[0], x.shape[1:]
        e = self._encode(x.reshape(b, -1))  # [B, D, E]
        shifted = jnp.pad(e, ((0, 0), (1, 0), (0, 0)))[:, :-1]  # position t: e(x_{t-1})
        h = self.input_conv(shifted)  # [B, D, R]
        conds = self._conditions(label, b)
        skips = 0.0
        for i, conv in enumerate(self.dilated):
            h, s = self._gate(i, conv(h), h, conds[i])
            skips = skips + s  # [B, D, S]
        return self._head(skips).reshape(b, *event, self.num_params)  # [B, *event, P]

    def decode(self, prev: jax.Array, pos: jax.Array, cache: Cache,
               label: jax.Array | None = None) -> tuple[jax.Array, Cache]:
        """One cached step: position ``pos``'s raw ``[B, P]`` from the previous value ``prev
        [B]`` (x_{pos-1}; ignored at pos = 0, where the shifted input is zeros) and ``cache``
        (see :func:`empty_cache`); returns it and the cache with position ``pos`` pushed."""
        b = prev.shape[0]
        e = jnp.where(pos > 0, self._encode(prev), 0.0)  # [B, E]
        taps, first = _push(cache[0], e, pos, 1, self.input_kernel_size)
        h = self.input_conv(taps, taps=True)  # [B, R]
        conds = self._conditions(label, b)
        new_cache, skips = [first], 0.0
        for i, (conv, d) in enumerate(zip(self.dilated, self.layer_dilations)):
            taps, buf = _push(cache[i + 1], h, pos, d, self.kernel_size)
            new_cache.append(buf)
            h, s = self._gate(i, conv(taps, taps=True), h, conds[i])
            skips = skips + s  # [B, S]
        return self._head(skips), tuple(new_cache)


def _push(buf: jax.Array, value: jax.Array, pos: jax.Array, dilation: int,
          kernel_size: int) -> tuple[jax.Array, jax.Array]:
    """The k taps of a causal conv at ``pos``, ``[B, k, C]`` oldest first, and the ring buffer
    ``buf [(k - 1) d, B, C]`` with ``value`` written. Slot s holds the input at the last
    position p < pos with p = s mod (k - 1) d (zeros before 0), so the input at pos - j d is in
    slot (pos - j d) mod (k - 1) d for j = 1..k-1; the oldest (j = k - 1) is read from slot
    pos mod (k - 1) d before ``value`` overwrites it."""
    size = buf.shape[0]
    if size == 0:
        return value[:, None], buf
    past = [jax.lax.dynamic_index_in_dim(buf, (pos - j * dilation) % size, 0, keepdims=False)
            for j in range(kernel_size - 1, 0, -1)]  # [B, C] each
    taps = jnp.stack([*past, value], axis=1)  # [B, k, C]
    return taps, jax.lax.dynamic_update_index_in_dim(buf, value, pos % size, 0)


def empty_cache(module: WaveNet, batch: int, dtype=jnp.float32) -> Cache:
    """Zero ring buffers for :meth:`WaveNet.decode`: the input layer's ``[k0 - 1, B, E]``, then
    every dilated layer's ``[(k - 1) d, B, R]``."""
    shapes = [(module.input_kernel_size - 1, batch, module.input_channels)]
    shapes += [((module.kernel_size - 1) * d, batch, module.residual_channels)
               for d in module.layer_dilations]
    return tuple(jnp.zeros(s, dtype) for s in shapes)


def wavenet_config_error(module: WaveNet) -> str | None:
    """Why the fields of ``module`` do not make a WaveNet, or None."""
    positive = {"num_params": module.num_params, "residual_channels": module.residual_channels,
                "gate_channels": module.gate_channels, "skip_channels": module.skip_channels,
                "kernel_size": module.kernel_size, "num_stacks": module.num_stacks,
                "input_kernel_size": module.input_kernel_size}
    for name, value in positive.items():
        if value < 1:
            return f"{name}={value} must be >= 1"
    if module.num_levels < 2:
        return f"num_levels={module.num_levels} must be >= 2"
    if module.embedding_dim < 0 or module.num_classes < 0:
        return "embedding_dim and num_classes must be >= 0"
    if len(module.dilations) < 1 or any(int(d) < 1 for d in module.dilations):
        return f"dilations={tuple(module.dilations)} must be one or more integers >= 1"
    return None


def _decoder(module: WaveNet, params, label: jax.Array | None) -> DecodeFn:
    """:meth:`WaveNet.decode` with the params and label bound: (x_{d-1} [B], d, cache) ->
    (raw_d [B, P], cache)."""
    return lambda prev, d, cache: module.apply({"params": params}, prev, d, cache, label,
                                               method=WaveNet.decode)


def wavenet_sample(module: WaveNet, params, key: jax.Array, x_init: ArrayLike, *,
                   draw: DrawFn, temperature: float,
                   label: jax.Array | None = None) -> jax.Array:
    """Samples ``x [B, *event]`` (the shape of ``x_init``) one raster dimension at a time with
    activation queues (fast-wavenet): one ``lax.scan`` over t = 0..D-1, step t running
    :meth:`WaveNet.decode` on x_{t-1} and drawing dimension t with ``keys[t]`` (``keys =
    jax.random.split(key, D)``), ``draw(keys[t], raw_t [B, P], temperature)``. Under the same
    key it gives the naive sampler's samples to float tolerance. ``params`` is the module's
    parameter tree (no ``{"params": ...}`` wrapper); ``label [B]`` with ``num_classes`` > 0."""
    return decode_sample(_decoder(module, params, label), empty_cache(module, x_init.shape[0]),
                         key, x_init, draw=draw, temperature=temperature)


def wavenet_cached_raw(module: WaveNet, params, x: ArrayLike,
                       label: jax.Array | None = None) -> jax.Array:
    """Teacher-forced decoding of a given ``x [B, *event]`` through the queues: the raw
    ``[B, *event, P]`` of every position from :meth:`WaveNet.decode`, one ``lax.scan`` fed
    x_{t-1}. Equals ``module.apply({"params": params}, x, label)`` to float tolerance."""
    x = jnp.asarray(x, jnp.float32)
    return decode_raw(_decoder(module, params, label), empty_cache(module, x.shape[0]), x)
