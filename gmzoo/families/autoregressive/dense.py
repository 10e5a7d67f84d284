"""Dense autoregressive networks over the flattened event (D = prod(event) dimensions, raster
order unless the network says otherwise), each ``net(x [B, *event], label=None) -> raw [B,
*event, P]`` as :mod:`gmzoo.families.autoregressive` asks, with x rescaled inside to
x / (num_levels - 1) (binary data stays 0/1).

- :class:`FVSBN`, the fully visible sigmoid belief net (Frey 1998; Bengio & Bengio 2000):
  logistic regression of every dimension on the ones before it, a strictly lower triangular
  weight matrix,  raw_d = b_d + sum_{j<d} W_dj x_j  (W [D, D, P], masked).
- :class:`NADE` (Larochelle & Murray 2011): one hidden layer whose weights are shared
  across the conditionals,  a_d = c + W_{<d}^T x_{<d},  h_d = sigmoid(a_d),
  raw_d = V_d h_d + b_d.  Teacher forcing gets every a_d at once from a cumulative sum; the
  sampler :func:`nade_sample` carries a_{d+1} = a_d + W_d x_d from one dimension to the next,
  O(DH) per sample instead of the naive O(D^2 H).
- :class:`MADE` (Germain et al. 2015, eq. 12-13): a masked MLP. Input k of the ordering gets
  degree m(k) = k + 1; hidden unit degrees are drawn from [min degree of the layer below, D - 1]
  (so no unit is dead); a hidden mask keeps m_l(j) >= m_{l-1}(i), the output mask
  m_0(d) > m_L(i). ``num_masks`` orderings and mask sets make an ensemble whose probabilities
  (not logits) are averaged:  log p(x) = logsumexp_k log p_k(x) - log K  (:func:`made_log_prob`).

A class label (``num_classes > 0``) adds a learned per-class bias to the pre-activations (the
outputs for FVSBN, the hidden and the outputs for NADE and MADE). FVSBN and MADE sample with the
family's naive sampler (:func:`gmzoo.families.autoregressive.sampling.naive_sample`; MADE under
the ordering of the chosen mask: :func:`made_sample`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gmzoo.families.autoregressive.sampling import (DrawFn, LogProbFn, check_sampler_inputs,
                                                    naive_sample, order_error)


def _flat_input(x: jax.Array, num_levels: int) -> jax.Array:
    """``x [B, *event]`` -> ``[B, D]`` float32 in [0, 1]."""
    return x.reshape(x.shape[0], -1).astype(jnp.float32) / (num_levels - 1)


def _class_bias(module: nn.Module, name: str, label, shape: tuple[int, ...]):
    """The per-class bias ``[B, *shape]`` of ``label [B]``, a learned table ``[num_classes,
    *shape]`` (0 for an unconditional net). Call from ``setup`` or a compact method."""
    if module.num_classes == 0:
        return 0.0
    return _lookup(module, module.param(name, nn.initializers.zeros,
                                        (module.num_classes, *shape)), label)


def _lookup(module: nn.Module, table: jax.Array | None, label) -> jax.Array | float:
    if table is None:
        return 0.0
    if label is None:
        raise ValueError(f"{type(module).__name__} is class-conditional "
                         f"(num_classes={module.num_classes}); pass label [B]")
    return table[jnp.asarray(label, jnp.int32)]


def _normal(fan_in: int):
    return nn.initializers.normal(1.0 / math.sqrt(max(fan_in, 1)))


class FVSBN(nn.Module):
    """raw_d = b_d + sum_{j<d} W_dj x_j: ``W [D, D, P]`` times the strictly lower triangular
    mask on every call, ``b [D, P]``."""

    num_params: int
    num_levels: int
    num_classes: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, label: ArrayLike | None = None) -> jax.Array:
        batch, event, p = x.shape[0], x.shape[1:], self.num_params
        d = math.prod(event)
        xs = _flat_input(x, self.num_levels)  # [B, D]
        w = self.param("W", _normal(d), (d, d, p))
        b = self.param("b", nn.initializers.zeros, (d, p))
        mask = np.tril(np.ones((d, d), np.float32), -1)[:, :, None]  # [D, D, 1]: j < d
        raw = jnp.einsum("bj,djp->bdp", xs, w * mask) + b  # [B, D, P]
        raw = raw + _class_bias(self, "class_bias", label, (d, p))
        return raw.reshape(batch, *event, p)


class NADE(nn.Module):
    """a_d = c + sum_{j<d} W_j x_j (``W [D, H]``), h_d = sigmoid(a_d),
    raw_d = V_d h_d + b_d (``V [D, H, P]``, ``b [D, P]``); every a_d at once by a cumulative
    sum (teacher forcing). A class label adds a learned bias to c and to b."""

    num_params: int
    num_levels: int
    hidden: int = 500
    num_classes: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, label: ArrayLike | None = None) -> jax.Array:
        batch, event, p, h = x.shape[0], x.shape[1:], self.num_params, self.hidden
        d = math.prod(event)
        xs = _flat_input(x, self.num_levels)  # [B, D]
        w = self.param("W", _normal(d), (d, h))
        c = self.param("c", nn.initializers.zeros, (h,))
        v = self.param("V", _normal(h), (d, h, p))
        b = self.param("b", nn.initializers.zeros, (d, p))
        c = c + _class_bias(self, "class_hidden", label, (h,))  # [H] or [B, H]
        b = b + _class_bias(self, "class_bias", label, (d, p))  # [D, P] or [B, D, P]
        terms = jnp.cumsum(xs[:, :, None] * w, axis=1)  # [B, D, H]: sum_{j<=d} W_j x_j
        before = jnp.concatenate([jnp.zeros_like(terms[:, :1]), terms[:, :-1]], axis=1)
        a = jnp.reshape(c, (-1, 1, h)) + before  # [B, D, H]: a_d, sum over j < d
        raw = jnp.einsum("bdh,dhp->bdp", jax.nn.sigmoid(a), v) + b  # [B, D, P]
        return raw.reshape(batch, *event, p)


def nade_sample(module: NADE, params, key: jax.Array, x_init: ArrayLike, *, draw: DrawFn,
                temperature: float, label: ArrayLike | None = None) -> jax.Array:
    """x ~ NADE in raster order with the pre-activation carried in the scan (Larochelle &
    Murray 2011): a_{d+1} = a_d + W_d x_d, O(DH) per sample. ``params`` the module's
    params (``variables["params"]``); ``draw``, ``temperature``, ``x_init [B, *event]`` and the
    keys (``jax.random.split(key, D)``, step d uses ``keys[d]``) as
    :func:`~gmzoo.families.autoregressive.sampling.naive_sample`, whose samples this equals
    under the same key. Returns x ``[B, *event]``."""
    check_sampler_inputs(x_init, temperature)
    x_init = jnp.asarray(x_init)
    shape = x_init.shape
    batch, d = shape[0], math.prod(shape[1:])
    w, c, v, b = params["W"], params["c"], params["V"], params["b"]  # [D,H] [H] [D,H,P] [D,P]
    if w.shape[0] != d:
        raise ValueError(f"x_init has {d} dimensions per example; the NADE params {w.shape[0]}")
    if module.num_classes:
        if label is None:
            raise ValueError(f"NADE is class-conditional (num_classes={module.num_classes}); "
                             "pass label [B]")
        label = jnp.asarray(label, jnp.int32)
        c = c + params["class_hidden"][label]  # [B, H]
        b = b + params["class_bias"][label]  # [B, D, P]
    else:
        b = jnp.broadcast_to(b, (batch, *b.shape))  # [B, D, P]
    a0 = jnp.broadcast_to(c, (batch, c.shape[-1]))  # [B, H]: a_1 = c
    keys = jax.random.split(key, d)

    def step(carry, inputs):
        x, a = carry  # [B, D], [B, H]
        i, k = inputs
        h = jax.nn.sigmoid(a)  # [B, H]
        raw_i = jnp.einsum("bh,hp->bp", h, v[i]) + b[:, i]  # [B, P]
        value = draw(k, raw_i, temperature).astype(x.dtype)  # [B]
        scaled = value.astype(jnp.float32) / (module.num_levels - 1)
        return (x.at[:, i].set(value), a + scaled[:, None] * w[i]), None

    (x, _), _ = jax.lax.scan(step, (x_init.reshape(batch, d), a0),
                             (jnp.arange(d, dtype=jnp.int32), keys))
    return jax.lax.stop_gradient(x.reshape(shape))


@functools.lru_cache(maxsize=64)
def made_masks(num_dims: int, hidden: tuple[int, ...], num_masks: int, mask_seed: int,
               natural_ordering: bool, ordering: tuple[int, ...] | None = None
               ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """MADE's orderings ``[K, D]`` and one mask ``[K, fan_in, fan_out]`` (float32 0/1) per
    layer (the last ``[K, H_L, D]``, one column per dimension), from a numpy generator seeded
    with ``mask_seed``. Ordering 0 is ``ordering`` when given (a permutation of 0..D-1), else
    the identity with ``natural_ordering``; the others are drawn permutations; the input at ordering position k has degree k + 1; hidden degrees are drawn
    from [lo, D - 1], lo the smallest degree of the layer below, with one unit set to lo and
    one to D - 1, so every hidden unit has an input (the unit of degree lo below) and an output
    (the unit of degree D - 1 above, or the dimension last in the ordering)."""
    if ordering is not None and (why := order_error(ordering, num_dims)) is not None:
        raise ValueError(f"MADE's ordering: {why}")
    rng = np.random.default_rng(mask_seed)
    orders, masks = [], [[] for _ in range(len(hidden) + 1)]
    for k in range(num_masks):
        if k == 0 and ordering is not None:
            order = np.asarray(ordering, np.int64)
        elif k == 0 and natural_ordering:
            order = np.arange(num_dims)
        else:
            order = rng.permutation(num_dims)
        degrees = [np.empty(num_dims, np.int64)]
        degrees[0][order] = np.arange(1, num_dims + 1)  # m_0(order[k]) = k + 1
        for width in hidden:
            lo = int(degrees[-1].min())
            m = rng.integers(lo, num_dims, size=width)  # [lo, D - 1]
            m[0], m[-1] = lo, num_dims - 1
            degrees.append(m)
        for layer in range(len(hidden)):  # hidden: m_l(j) >= m_{l-1}(i)
            masks[layer].append(degrees[layer][:, None] <= degrees[layer + 1][None, :])
        masks[-1].append(degrees[-1][:, None] < degrees[0][None, :])  # output: m_0(d) > m_L(i)
        orders.append(order)
    out = np.stack(orders), tuple(np.stack(m).astype(np.float32) for m in masks)
    for array in (out[0], *out[1]):
        array.setflags(write=False)
    return out


class MADE(nn.Module):
    """A masked MLP (ReLU hidden layers of widths ``hidden``) over ``num_dims`` = D
    dimensions, ``num_masks`` orderings and mask sets (:func:`made_masks`; the first mask's
    ordering ``ordering`` when given, a tuple permuting 0..D-1), the masks numpy
    constants applied as ``kernel * mask`` on every call. ``__call__(x, label, mask_index)``
    gives raw under mask ``mask_index`` (an int, or a traced int: the masks are indexed in
    jnp); ``orderings()`` the ordering of each mask ``[K, D]``."""

    num_params: int
    num_levels: int
    num_dims: int
    hidden: Sequence[int] = (500,)
    num_masks: int = 1
    natural_ordering: bool = True
    mask_seed: int = 0
    num_classes: int = 0
    ordering: tuple[int, ...] | None = None

    def _masks(self) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        if self.num_dims < 2:
            raise ValueError(f"MADE needs at least 2 dimensions, got num_dims={self.num_dims}")
        if self.num_masks < 1 or any(w < 1 for w in self.hidden):
            raise ValueError(f"num_masks={self.num_masks} and hidden={tuple(self.hidden)} must "
                             "be positive")
        ordering = None if self.ordering is None else tuple(int(i) for i in self.ordering)
        return made_masks(self.num_dims, tuple(self.hidden), self.num_masks, self.mask_seed,
                          self.natural_ordering, ordering)

    def setup(self):
        _, masks = self._masks()
        p = self.num_params
        # the output mask, one column per dimension, repeated for its P outputs: [K, H_L, D P]
        self.masks = (*masks[:-1], np.repeat(masks[-1], p, axis=-1))
        widths = (self.num_dims, *self.hidden, self.num_dims * p)
        self.kernels = [self.param(f"kernel_{i}", nn.initializers.lecun_normal(),
                                   (widths[i], widths[i + 1])) for i in range(len(widths) - 1)]
        self.biases = [self.param(f"bias_{i}", nn.initializers.zeros, (widths[i + 1],))
                       for i in range(len(widths) - 1)]
        table = lambda name, n: (self.param(name, nn.initializers.zeros, (self.num_classes, n))
                                 if self.num_classes else None)
        self.class_hidden = table("class_hidden", widths[1]) if self.hidden else None
        self.class_bias = table("class_bias", widths[-1])

    def orderings(self) -> np.ndarray:
        """The ordering of each mask, ``[K, D]``: mask k draws dimension ``orderings()[k, d]``
        at step d."""
        return np.array(self._masks()[0])

    def __call__(self, x: jax.Array, label: ArrayLike | None = None,
                 mask_index: int | jax.Array = 0) -> jax.Array:
        batch, event, p = x.shape[0], x.shape[1:], self.num_params
        if math.prod(event) != self.num_dims:
            raise ValueError(f"x has {math.prod(event)} dimensions per example ({tuple(event)}); "
                             f"this MADE was built for num_dims={self.num_dims}")
        h = _flat_input(x, self.num_levels)  # [B, D]
        last = len(self.kernels) - 1
        for i, (kernel, bias, mask) in enumerate(zip(self.kernels, self.biases, self.masks)):
            h = h @ (kernel * jnp.asarray(mask)[mask_index]) + bias  # [B, widths[i + 1]]
            if i == 0 and i < last:
                h = h + _lookup(self, self.class_hidden, label)
            if i < last:
                h = jax.nn.relu(h)
        h = h + _lookup(self, self.class_bias, label)  # [B, D P]
        return h.reshape(batch, *event, p)


def _joint(raw: jax.Array, x: jax.Array, log_prob_fn: LogProbFn) -> jax.Array:
    """sum_d log p(x_d | raw_d): ``[B]``."""
    terms = log_prob_fn(raw, x)  # [B, *event]
    return terms.reshape(terms.shape[0], -1).sum(axis=1)


def made_log_prob(module: MADE, params, x: ArrayLike, log_prob_fn: LogProbFn,
                  label: ArrayLike | None = None) -> jax.Array:
    """log p(x) of the mask ensemble, probabilities averaged over the K masks:
    logsumexp_k log p_k(x) - log K, ``[B]`` (each log p_k(x) a teacher-forced sum over the
    dimensions). ``log_prob_fn(raw [..., P], x [...]) -> [...]`` the per-dimension
    log-likelihood, e.g. ``functools.partial(outputs.log_prob, "bernoulli", num_levels=2)``."""
    x = jnp.asarray(x)
    per_mask = jnp.stack([_joint(module.apply({"params": params}, x, label, mask_index=k), x,
                                 log_prob_fn) for k in range(module.num_masks)])  # [K, B]
    return jax.nn.logsumexp(per_mask, axis=0) - math.log(module.num_masks)


def made_sample(module: MADE, params, key: jax.Array, x_init: ArrayLike, *, draw: DrawFn,
                temperature: float, label: ArrayLike | None = None,
                mask_index: int = 0) -> jax.Array:
    """x ~ p_k, the MADE of mask ``mask_index`` (a Python int), by the naive sampler under
    that mask's ordering. (The ensemble is the uniform mixture of the p_k: draw k first.)"""
    if not 0 <= mask_index < module.num_masks:
        raise ValueError(f"mask_index={mask_index}; this MADE has masks 0..{module.num_masks - 1}")
    apply_fn = lambda x: module.apply({"params": params}, x, label, mask_index=mask_index)
    return naive_sample(apply_fn, key, x_init, draw=draw, temperature=temperature,
                        order=module.orderings()[mask_index])
