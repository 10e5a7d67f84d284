"""An autoregressive transformer over pixel tokens (ImageGPT, Chen et al. 2020), with a
key-value cache for sampling.

The D dimensions of ``x [B, *event]`` in raster order are D integer tokens t_1..t_D (levels
0..L-1). The sequence fed to the network is shifted right by one: s_1 = a learned start token
(or, with ``num_classes`` > 0, the class embedding of the label, so every position sees the
label), s_d = E[t_{d-1}] for d > 1, plus a learned position embedding P_d. ``num_layers``
pre-LayerNorm blocks (GPT-2 order) follow,

    h <- h + MHA(LN(h)),        h <- h + MLP(LN(h)),        raw = Dense(LN(h)),

where MHA is causal multi-head self-attention (Vaswani et al. 2017, eq. 1; seeds note 003):
per head, with Q = hW_Q, K = hW_K, V = hW_V,

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_head) + M) V,    M_ij = 0 if j <= i else -inf.

Output d reads s_1..s_d, i.e. the label and t_1..t_{d-1}: p(t_d | t_<d), the contract of
:mod:`gmzoo.families.autoregressive`.

Levels are always tokens: each enters through a learned ``nn.Embed(num_levels, d_model)`` (the
code-embedding input of a VQ-VAE prior; there is no scaled-scalar input to replace).

Spatial conditioning (``cond_channels`` E > 0): a map ``cond [B, *event[:-1], E]`` (``[B, H,
W, E]`` for images: the image's own H, W) is flattened in raster order, each pixel's row repeated
for its C channel tokens (c_1..c_D, ``[B, D, E]``), and a projection is added to the inputs,

    s_d <- s_d + W_c c_d          (W_c: [E, d_model], no bias),

so output d, which predicts t_d, sees c_1..c_d (its own pixel's cond included) besides the
label and t_<d. cond is observed whole and never depends on x, so the causal mask of x is
untouched.

Sampling with a cache (:func:`transformer_sample`): position d's keys and values depend only
on s_1..s_d, so once computed they never change. One ``lax.scan`` step embeds the one new
token, attends from it to the cache ``[B, layers, heads, D, d_head]`` (the rows written so far)
and appends its own k, v: O(D) work per step instead of a full O(D^2) forward pass.

Why the attention is written here rather than taken from
``flax.linen.MultiHeadDotProductAttention(decode=True)`` (flax ``examples/lm1b``): that layer
keeps its cache in a mutable ``cache`` collection, created by an init pass on a full-length
input and threaded through ``apply(..., mutable=["cache"])`` with an index per layer. Explicit
q, k, v projections let one parameter tree serve both paths (the full causal forward of
training and the one-token :meth:`ARTransformer.decode` step), keep the cache a plain array in
the scan carry, and make "cached logits equal full-forward logits" a comparison of two methods
of the same module (:func:`transformer_cached_raw`).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gmzoo.families.autoregressive.sampling import (DecodeFn, DrawFn, decode_raw,
                                                    decode_sample)

Cache = tuple[jax.Array, jax.Array]  # keys, values: [B, layers, heads, D, d_head] each

_EMBED_INIT = nn.initializers.normal(0.02)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention with explicit q, k, v projections: a causal full pass
    ``[B, T, d_model] -> [B, T, d_model]`` and a one-token :meth:`step` against a cache."""

    d_model: int
    num_heads: int

    def setup(self):
        head_dim = self.d_model // self.num_heads
        self.query = nn.DenseGeneral((self.num_heads, head_dim), name="query")
        self.key = nn.DenseGeneral((self.num_heads, head_dim), name="key")
        self.value = nn.DenseGeneral((self.num_heads, head_dim), name="value")
        self.out = nn.DenseGeneral(self.d_model, axis=(-2, -1), name="out")

    def __call__(self, h: jax.Array) -> jax.Array:
        q, k, v = self.query(h), self.key(h), self.value(h)  # [B, T, heads, d_head] each
        t, head_dim = h.shape[1], q.shape[-1]
        logits = jnp.einsum("bthd,bshd->bhts", q, k) / math.sqrt(head_dim)  # [B, heads, T, T]
        causal = jnp.tril(jnp.ones((t, t), bool))  # j <= i
        weights = jax.nn.softmax(jnp.where(causal, logits, -jnp.inf), axis=-1)
        return self.out(jnp.einsum("bhts,bshd->bthd", weights, v))  # [B, T, d_model]

    def step(self, h: jax.Array, keys: jax.Array, values: jax.Array,
             pos: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Position ``pos``'s output from ``h [B, d_model]`` and the cache ``keys, values
        [B, heads, D, d_head]`` (rows < pos filled); returns it ``[B, d_model]`` and the cache
        with row ``pos`` written."""
        q, k, v = self.query(h), self.key(h), self.value(h)  # [B, heads, d_head] each
        keys = keys.at[:, :, pos].set(k)
        values = values.at[:, :, pos].set(v)
        logits = jnp.einsum("bhd,bhsd->bhs", q, keys) / math.sqrt(q.shape[-1])  # [B, heads, D]
        seen = jnp.arange(keys.shape[2]) <= pos  # [D]
        weights = jax.nn.softmax(jnp.where(seen, logits, -jnp.inf), axis=-1)
        return self.out(jnp.einsum("bhs,bhsd->bhd", weights, values)), keys, values


class Block(nn.Module):
    """Pre-LayerNorm transformer block: h + MHA(LN(h)), then h + MLP(LN(h)) (GELU, width
    ``mlp_ratio * d_model``)."""

    d_model: int
    num_heads: int
    mlp_ratio: int

    def setup(self):
        self.ln_attn = nn.LayerNorm(name="ln_attn")
        self.attn = CausalSelfAttention(self.d_model, self.num_heads, name="attn")
        self.ln_mlp = nn.LayerNorm(name="ln_mlp")
        self.mlp_in = nn.Dense(self.mlp_ratio * self.d_model, name="mlp_in")
        self.mlp_out = nn.Dense(self.d_model, name="mlp_out")

    def _mlp(self, h: jax.Array) -> jax.Array:
        return h + self.mlp_out(nn.gelu(self.mlp_in(self.ln_mlp(h))))

    def __call__(self, h: jax.Array) -> jax.Array:
        return self._mlp(h + self.attn(self.ln_attn(h)))  # [B, T, d_model]

    def step(self, h: jax.Array, keys: jax.Array, values: jax.Array,
             pos: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        a, keys, values = self.attn.step(self.ln_attn(h), keys, values, pos)
        return self._mlp(h + a), keys, values  # [B, d_model]


class ARTransformer(nn.Module):
    """``net(x [B, *event], label [B] | None) -> raw [B, *event, P]``: a causal transformer
    over the D = prod(event) tokens of x (module docstring). ``max_len`` must equal D (the
    caller sets it from the data); ``num_params`` is the likelihood's P."""

    num_levels: int
    num_params: int
    max_len: int
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 4
    mlp_ratio: int = 4
    num_classes: int = 0
    cond_channels: int = 0  # E of cond [B, *event[:-1], E]: spatial conditioning (0: none)

    def setup(self):
        if self.d_model % self.num_heads:
            raise ValueError(f"ARTransformer: d_model={self.d_model} does not split into "
                             f"num_heads={self.num_heads} heads")
        if self.cond_channels < 0:
            raise ValueError(f"ARTransformer needs cond_channels >= 0 (0: no spatial "
                             f"conditioning), got {self.cond_channels}")
        self.token_embed = nn.Embed(self.num_levels, self.d_model, embedding_init=_EMBED_INIT,
                                    name="token_embed")
        if self.num_classes > 0:
            self.class_embed = nn.Embed(self.num_classes, self.d_model,
                                        embedding_init=_EMBED_INIT, name="class_embed")
        else:
            self.start = self.param("start", _EMBED_INIT, (self.d_model,))
        self.pos_embed = self.param("pos_embed", _EMBED_INIT, (self.max_len, self.d_model))
        if self.cond_channels > 0:
            self.cond_proj = nn.Dense(self.d_model, use_bias=False, name="cond_proj")
        self.blocks = [Block(self.d_model, self.num_heads, self.mlp_ratio, name=f"block_{i}")
                       for i in range(self.num_layers)]
        self.ln_final = nn.LayerNorm(name="ln_final")
        self.head = nn.Dense(self.num_params, name="head")

    def _tokens(self, x: jax.Array) -> jax.Array:
        return jnp.clip(jnp.round(x), 0, self.num_levels - 1).astype(jnp.int32)

    def _first(self, label: jax.Array | None, batch: int) -> jax.Array:
        """s_1 ``[B, d_model]``: the class embedding of ``label``, or the start token."""
        if self.num_classes > 0:
            if label is None:
                raise ValueError(f"ARTransformer was built with num_classes={self.num_classes}"
                                 " (class-conditional); pass a label [B]")
            return self.class_embed(jnp.asarray(label, jnp.int32))
        if label is not None:
            raise ValueError("got a label, but ARTransformer was built with num_classes=0 "
                             "(unconditional); set num_classes to the number of classes")
        return jnp.broadcast_to(self.start, (batch, self.d_model))

    def _cond_positions(self, cond: jax.Array | None, spatial: tuple[int, ...] | None = None
                        ) -> tuple[jax.Array, int] | tuple[None, int]:
        """``cond [B, *spatial, E]`` flattened in raster order ``[B, D / r, E]`` and r = D /
        prod(spatial), the tokens at each position (c_d is row d // r), or (None, 1) without
        cond. ``spatial``: x's ``event[:-1]``, checked when given."""
        e = self.cond_channels
        if e > 0 and cond is None:
            raise ValueError(f"ARTransformer was built with cond_channels={e} (spatially "
                             f"conditioned); pass cond [B, H, W, {e}]")
        if e == 0:
            if cond is not None:
                raise ValueError("got a cond, but ARTransformer was built with cond_channels=0"
                                 "; set cond_channels to cond's last axis E")
            return None, 1
        positions = math.prod(cond.shape[1:-1])
        if (cond.ndim < 3 or cond.shape[-1] != e or self.max_len % positions
                or (spatial is not None and tuple(cond.shape[1:-1]) != tuple(spatial))):
            where = "" if spatial is None else f", *event[:-1] = {tuple(spatial)}"
            raise ValueError(f"cond has shape {tuple(cond.shape)}; ARTransformer takes cond "
                             f"[B, *event[:-1], {e}] (max_len={self.max_len}{where})")
        flat = cond.reshape(cond.shape[0], positions, e).astype(jnp.float32)  # [B, D / r, E]
        return flat, self.max_len // positions

    def __call__(self, x: jax.Array, label: jax.Array | None = None, *,
                 cond: jax.Array | None = None) -> jax.Array:
        """``x [B, *event]`` levels, ``label [B]`` (``num_classes`` > 0), ``cond [B,
        *event[:-1], E]`` (``cond_channels`` E > 0) -> ``raw [B, *event, P]``."""
        b, event = x.shape[0], x.shape[1:]
        tokens = self._tokens(x.reshape(b, -1))  # [B, D]
        if tokens.shape[1] != self.max_len:
            raise ValueError(f"ARTransformer was built for max_len={self.max_len} dimensions, "
                             f"got x of shape {tuple(x.shape)} ({tokens.shape[1]} dimensions)")
        cond_flat, r = self._cond_positions(cond, event[:-1])  # [B, D / r, E] or None
        first = self._first(label, b)[:, None]  # [B, 1, d_model]
        h = jnp.concatenate([first, self.token_embed(tokens[:, :-1])], axis=1)  # [B, D, d]
        h = h + self.pos_embed[None]
        if cond_flat is not None:
            h = h + self.cond_proj(jnp.repeat(cond_flat, r, axis=1))  # s_d + W_c c_d
        for block in self.blocks:
            h = block(h)
        raw = self.head(self.ln_final(h))  # [B, D, P]
        return raw.reshape(b, *event, self.num_params).astype(jnp.float32)

    def decode(self, prev: jax.Array, pos: jax.Array, cache: Cache,
               label: jax.Array | None = None,
               cond: jax.Array | None = None) -> tuple[jax.Array, Cache]:
        """One cached step: position ``pos``'s raw ``[B, P]`` (the conditional of dimension
        ``pos``) from the previous token ``prev [B]`` (x_{pos-1}; ignored at pos = 0, where the
        start or class token is the input) and ``cache`` (rows < pos filled, see
        :func:`empty_cache`); returns it and the cache with row ``pos`` written. ``cond``: the
        whole map ``[B, *event[:-1], E]`` as the full forward takes it (c_pos is read off)."""
        b = prev.shape[0]
        h = jnp.where(pos == 0, self._first(label, b), self.token_embed(self._tokens(prev)))
        h = h + self.pos_embed[pos]  # [B, d_model]
        cond_flat, r = self._cond_positions(cond)  # [B, D / r, E] or None
        if cond_flat is not None:
            c = jax.lax.dynamic_index_in_dim(cond_flat, pos // r, axis=1, keepdims=False)
            h = h + self.cond_proj(c)  # + W_c c_pos, [B, d_model]
        keys, values = cache  # [B, layers, heads, D, d_head] each
        new_keys, new_values = [], []
        for i, block in enumerate(self.blocks):
            h, k, v = block.step(h, keys[:, i], values[:, i], pos)
            new_keys.append(k)
            new_values.append(v)
        raw = self.head(self.ln_final(h)).astype(jnp.float32)  # [B, P]
        return raw, (jnp.stack(new_keys, axis=1), jnp.stack(new_values, axis=1))


def empty_cache(module: ARTransformer, batch: int, dtype=jnp.float32) -> Cache:
    """Zero keys and values ``[B, layers, heads, D, d_head]`` for :meth:`ARTransformer.decode`."""
    shape = (batch, module.num_layers, module.num_heads, module.max_len,
             module.d_model // module.num_heads)
    return jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)


def _decoder(module: ARTransformer, params, label: jax.Array | None,
             cond: jax.Array | None = None) -> DecodeFn:
    """:meth:`ARTransformer.decode` with the params, label and cond bound: (x_{d-1} [B], d,
    cache) -> (raw_d [B, P], cache)."""
    return lambda prev, d, cache: module.apply({"params": params}, prev, d, cache, label, cond,
                                               method=ARTransformer.decode)


def transformer_sample(module: ARTransformer, params, key: jax.Array, x_init: ArrayLike, *,
                       draw: DrawFn, temperature: float, label: jax.Array | None = None,
                       cond: jax.Array | None = None) -> jax.Array:
    """Samples ``x [B, *event]`` (the shape of ``x_init``) one raster dimension at a time with
    the key-value cache: one ``lax.scan`` over d = 0..D-1, step d running
    :meth:`ARTransformer.decode` on x_{d-1} and drawing dimension d with ``keys[d]``
    (``keys = jax.random.split(key, D)``), ``draw(keys[d], raw_d [B, P], temperature)``.
    Under the same key it gives the naive sampler's samples (the whole network re-run for every
    dimension) to float tolerance. ``params`` is the module's parameter tree (no
    ``{"params": ...}`` wrapper); ``label [B]`` with ``num_classes`` > 0; ``cond [B,
    *event[:-1], E]`` with ``cond_channels`` E > 0. A temperature that is not a finite number
    > 0 is refused (ValueError) before any compute."""
    x_init = jnp.asarray(x_init, jnp.float32)
    if math.prod(x_init.shape[1:]) != module.max_len:
        raise ValueError(f"transformer_sample: the module was built for max_len="
                         f"{module.max_len} dimensions, x_init has shape {tuple(x_init.shape)}")
    if cond is not None and tuple(cond.shape[1:-1]) != tuple(x_init.shape[1:-1]):
        raise ValueError(f"transformer_sample: cond has shape {tuple(cond.shape)}; it must be "
                         f"[B, *event[:-1], E] for x_init of shape {tuple(x_init.shape)}")
    return decode_sample(_decoder(module, params, label, cond),
                         empty_cache(module, x_init.shape[0]), key, x_init, draw=draw,
                         temperature=temperature)


def transformer_cached_raw(module: ARTransformer, params, x: ArrayLike,
                           label: jax.Array | None = None,
                           cond: jax.Array | None = None) -> jax.Array:
    """Teacher-forced decoding of a given ``x [B, *event]`` through the cache: the raw
    ``[B, *event, P]`` of every position from :meth:`ARTransformer.decode`, one ``lax.scan``
    over positions fed x_{d-1}. It equals ``module.apply({"params": params}, x, label,
    cond=cond)`` to float tolerance (the check that the cached step computes what the full
    forward does)."""
    x = jnp.asarray(x, jnp.float32)
    return decode_raw(_decoder(module, params, label, cond), empty_cache(module, x.shape[0]), x)
