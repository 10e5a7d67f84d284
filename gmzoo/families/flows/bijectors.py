"""Bijectors of image flows (Real NVP: Dinh et al. 2017, "Density estimation using Real NVP";
Glow: Kingma & Dhariwal 2018, "Glow: Generative Flow with Invertible 1x1 Convolutions").

Every bijector maps images ``x [B, H, W, C]`` (NHWC) in the normalising direction, data to
latent, and has distrax's two methods (Linen methods here; ``__call__`` is the forward):

    forward_and_log_det(x, cond=None) -> (y, log|det dy/dx| [B])
    inverse_and_log_det(y, cond=None) -> (x, log|det dx/dy| [B])     (the two log-dets cancel)

so log p(x) = log p_Z(f(x)) + sum_k log_det_k, and sampling runs the inverses in reverse.

- :class:`AffineCoupling` (Real NVP eq. 7-9): with a binary mask b (1 = passed through),
  y = b x + (1 - b) (x exp(s(b x)) + t(b x)), log_det = sum_{b=0} s. The mask is a
  "checkerboard" ((i + j) % 2 == parity passes) or "channel" (parity 0: the first C // 2
  channels pass, parity 1: the rest). s and t come from a small convolutional net (Glow's NN():
  conv k x k, ReLU, 1x1 convs, ReLU, a zero-initialised k x k conv, so a coupling starts as the
  identity) on b x, with an optional conditioning tensor ``cond [B, H, W, Cc]`` concatenated to
  its input. The log-scale is bounded, s = scale_factor * tanh(raw_s) with a learned
  per-channel scale_factor (Real NVP sec. 4.1), since unbounded scales are the usual source of
  NaNs [PITFALLS: karpathy/pytorch-normalizing-flows#9, rosinality/glow-pytorch#37].
- :func:`squeeze` / :func:`unsqueeze` (Real NVP sec. 3.6): [B, H, W, C] <-> [B, H/2, W/2, 4C],
  each 2x2 patch to channels in the order (row in patch, column in patch, channel);
  a permutation, log_det = 0.
- :class:`ActNorm` (Glow sec. 3.1): y = (x + bias) * exp(log_scale) per channel,
  log_det = H W sum(log_scale). Data-dependent init: when the params are created (``init`` on a
  real batch, through the forward), bias = -mean and log_scale = -log(std + eps) of that batch
  per channel (over B, H, W; with ``axis_name``, of the global batch: two ``lax.pmean``s, of the
  mean and then of the centred squares, exact for equal per-device batches), so the init batch
  comes out with mean 0 and std 1. The statistics are traced only when ``is_initializing()``
  and reach the params through their initialisers, so they are computed from whatever batch
  ``init`` is given, jitted or not, with no Python-side flag and no cost in ``apply``
  [PITFALLS: openai/glow's disabled cross-device reduction; a trace-time flag freezes under jit].
- :class:`Invertible1x1Conv` (Glow sec. 3.2, LU form): y_ij = W x_ij with
  W = P L (U + diag(sign_s * exp(log_s))), P a fixed permutation and sign_s fixed, L unit lower
  triangular and U strictly upper triangular (trained), log_det = H W sum(log_s). W starts as a
  random rotation: the QR of a Gaussian, then its LU, in numpy from the ``seed`` field, which
  also fixes P and sign_s, so they are constants and not params (give each layer its own seed).
  det W < 0 is allowed: sign_s carries it [PITFALLS: openai/glow#40].
- :func:`logit_transform` (Real NVP sec. 4.1): y = logit(alpha + (1 - 2 alpha) x) for x in
  [0, 1]^D, with its exact log-det. Uniform dequantization and bits/dim are the spine's (the
  variational one is :mod:`gmzoo.families.flows.dequantization`'s): the data space
  (``data.dequantize=true``, :mod:`gmzoo.data.preprocess`) hands the flow x' = (x + u) / L, and
  ``gmzoo evaluate`` reports (NLL / D + log L) / log 2 for L levels, where NLL = -log p(x') must
  already include every log-det from x' to the latent, this logit's among them [PITFALLS: a
  missing term cost 0.92 bits/dim in Kim-Dongjun/Soft-Truncation#2].
- :class:`Chain`: bijectors composed, log-dets summed; the inverse runs them in reverse.
  :class:`Squeeze` and :class:`LogitTransform` wrap the pure functions for a chain.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

MASKS = ("checkerboard", "channel")


def _sum_per_example(a: jax.Array) -> jax.Array:
    return a.reshape(a.shape[0], -1).sum(-1)  # [B]


def _check_image(name: str, x: jax.Array) -> None:
    if x.ndim != 4:
        raise ValueError(f"{name} takes images [B, H, W, C], got shape {tuple(x.shape)}")


# ---- squeeze -------------------------------------------------------------------------------
def squeeze(x: jax.Array) -> jax.Array:
    """[B, H, W, C] -> [B, H/2, W/2, 4C]: channel (2 di + dj) C + c of output pixel (i, j) is
    channel c of input pixel (2i + di, 2j + dj). A permutation: log_det = 0."""
    _check_image("squeeze", x)
    b, h, w, c = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"squeeze needs even H and W, got H={h}, W={w}")
    x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // 2, w // 2, 4 * c)


def unsqueeze(y: jax.Array) -> jax.Array:
    """[B, H, W, 4C] -> [B, 2H, 2W, C], the inverse of :func:`squeeze`."""
    _check_image("unsqueeze", y)
    b, h, w, c4 = y.shape
    if c4 % 4:
        raise ValueError(f"unsqueeze needs C divisible by 4, got C={c4}")
    y = y.reshape(b, h, w, 2, 2, c4 // 4).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(b, 2 * h, 2 * w, c4 // 4)


class Squeeze(nn.Module):
    """:func:`squeeze` as a bijector (inverse :func:`unsqueeze`), log_det 0."""

    def __call__(self, x, cond=None):
        return self.forward_and_log_det(x, cond)

    def forward_and_log_det(self, x: jax.Array, cond: jax.Array | None = None):
        return squeeze(x), jnp.zeros(x.shape[:1], x.dtype)

    def inverse_and_log_det(self, y: jax.Array, cond: jax.Array | None = None):
        return unsqueeze(y), jnp.zeros(y.shape[:1], y.dtype)


# ---- affine coupling -----------------------------------------------------------------------
def coupling_mask(shape: Sequence[int], mask: str, parity: int) -> np.ndarray:
    """b ``[1, H, W, C]`` for an image of ``shape (H, W, C)``: 1 where x passes unchanged
    (and feeds the net), 0 where it is transformed."""
    h, w, c = shape
    if mask not in MASKS:
        raise ValueError(f"mask={mask!r}; choose one of {MASKS}")
    if parity not in (0, 1):
        raise ValueError(f"parity={parity!r}; choose 0 or 1")
    if mask == "checkerboard":
        if h * w < 2:
            raise ValueError(f"a checkerboard coupling needs H * W >= 2, got H={h}, W={w}")
        b = (np.add.outer(np.arange(h), np.arange(w)) % 2 == parity)[:, :, None]  # [H, W, 1]
        b = np.broadcast_to(b, (h, w, c))
    else:
        if c < 2:
            raise ValueError(f"a channel coupling needs C >= 2 channels, got C={c}")
        first = np.arange(c) < c // 2
        b = np.broadcast_to(first if parity == 0 else ~first, (h, w, c))
    return b[None].astype(np.float32)


class AffineCoupling(nn.Module):
    """Real NVP's affine coupling (eq. 7-9) with a bounded log-scale and a zero last layer:
    the identity at init. ``num_layers`` ReLU convs (k x k, then 1x1) of ``hidden`` channels
    before the zero-initialised k x k output conv."""

    mask: str = "checkerboard"  # or "channel"
    parity: int = 0
    hidden: int = 64
    num_layers: int = 2
    kernel: int = 3

    @nn.compact
    def shift_and_log_scale(self, x_kept: jax.Array,
                            cond: jax.Array | None) -> tuple[jax.Array, jax.Array]:
        """(s, t) ``[B, H, W, C]`` from the passed-through part b x (and ``cond``)."""
        c = x_kept.shape[-1]
        h = x_kept if cond is None else jnp.concatenate([x_kept, cond.astype(x_kept.dtype)], -1)
        for k in range(self.num_layers):
            size = (self.kernel, self.kernel) if k == 0 else (1, 1)
            h = nn.relu(nn.Conv(self.hidden, size, name=f"conv_{k}")(h))
        out = nn.Conv(2 * c, (self.kernel, self.kernel), kernel_init=nn.initializers.zeros,
                      name="out")(h)  # [B, H, W, 2C]
        raw_s, t = out[..., :c], out[..., c:]
        scale_factor = self.param("scale_factor", nn.initializers.ones, (c,))
        return scale_factor * jnp.tanh(raw_s), t

    def _masked_s_t(self, x: jax.Array, cond: jax.Array | None):
        _check_image("AffineCoupling", x)
        if self.num_layers < 1 or self.hidden < 1 or self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"AffineCoupling needs num_layers >= 1, hidden >= 1 and an odd "
                             f"kernel, got num_layers={self.num_layers}, hidden={self.hidden}, "
                             f"kernel={self.kernel}")
        if cond is not None and (cond.ndim != 4 or cond.shape[:3] != x.shape[:3]):
            raise ValueError(f"cond must be [B, H, W, Cc] = {tuple(x.shape[:3])} + (Cc,) like "
                             f"x, got shape {tuple(cond.shape)}")
        b = jnp.asarray(coupling_mask(x.shape[1:], self.mask, self.parity), x.dtype)
        s, t = self.shift_and_log_scale(x * b, cond)
        return s * (1 - b), t * (1 - b)  # 0 on the passed-through dims

    def __call__(self, x, cond=None):
        return self.forward_and_log_det(x, cond)

    def forward_and_log_det(self, x: jax.Array, cond: jax.Array | None = None):
        s, t = self._masked_s_t(x, cond)
        return x * jnp.exp(s) + t, _sum_per_example(s)  # exp(0) x + 0 = x where b = 1

    def inverse_and_log_det(self, y: jax.Array, cond: jax.Array | None = None):
        s, t = self._masked_s_t(y, cond)  # b y = b x: the same s, t as the forward
        return (y - t) * jnp.exp(-s), -_sum_per_example(s)


# ---- ActNorm -------------------------------------------------------------------------------
class ActNorm(nn.Module):
    """Glow's per-channel affine map with data-dependent init (see the module docstring).

    ``axis_name``: a mapped axis (``jax.vmap``/``shard_map``/``pmap``) over which the init
    statistics are averaged, for the global batch under data parallelism (equal per-device
    batches); ``init`` must then run inside that map. Params created through
    ``inverse_and_log_det`` start as the identity (no data is seen in that direction).
    """

    axis_name: str | None = None
    eps: float = 1e-6  # added to the std (Glow)

    def _global_mean(self, a: jax.Array) -> jax.Array:
        m = jnp.mean(a, axis=(0, 1, 2))  # [C]
        return m if self.axis_name is None else jax.lax.pmean(m, self.axis_name)

    @nn.compact
    def bias_and_log_scale(self, x: jax.Array, from_data: bool) -> tuple[jax.Array, jax.Array]:
        """The params ``[C]`` each; at init from ``x``'s statistics when ``from_data``."""
        _check_image("ActNorm", x)
        c = x.shape[-1]
        b0 = ls0 = jnp.zeros((c,), x.dtype)
        if self.is_initializing() and from_data:  # only while the params are being created
            mean = self._global_mean(x)
            std = jnp.sqrt(self._global_mean(jnp.square(x - mean)))
            b0, ls0 = -mean, -jnp.log(std + self.eps)
        bias = self.param("bias", lambda _key: b0)
        log_scale = self.param("log_scale", lambda _key: ls0)
        return bias, log_scale

    def __call__(self, x, cond=None):
        return self.forward_and_log_det(x, cond)

    def forward_and_log_det(self, x: jax.Array, cond: jax.Array | None = None):
        bias, log_scale = self.bias_and_log_scale(x, from_data=True)
        log_det = x.shape[1] * x.shape[2] * jnp.sum(log_scale)
        return (x + bias) * jnp.exp(log_scale), jnp.full(x.shape[:1], log_det)

    def inverse_and_log_det(self, y: jax.Array, cond: jax.Array | None = None):
        bias, log_scale = self.bias_and_log_scale(y, from_data=False)
        log_det = -y.shape[1] * y.shape[2] * jnp.sum(log_scale)
        return y * jnp.exp(-log_scale) - bias, jnp.full(y.shape[:1], log_det)


# ---- invertible 1x1 convolution ------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def lu_init(num_channels: int, seed: int) -> tuple[np.ndarray, ...]:
    """Glow's init: a random rotation Q (QR of a seeded Gaussian [C, C], columns signed by
    diag(R)), as Q = P L (U + diag(s)).
    Returns float64 ``(P, L, U strictly upper, sign_s, log|s|)``."""
    if num_channels < 1:
        raise ValueError(f"an invertible 1x1 convolution needs C >= 1, got C={num_channels}")
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((num_channels, num_channels)))
    q = q * np.sign(np.diag(r))  # Haar-random, either sign of det (LAPACK's Q alone has a
    # fixed sign of det for a given C)
    p, lower, u = scipy.linalg.lu(q)  # q = p @ lower @ u
    s = np.diag(u)
    return p, lower, np.triu(u, 1), np.sign(s), np.log(np.abs(s))


class Invertible1x1Conv(nn.Module):
    """Glow's invertible 1x1 convolution in LU form; P and sign_s are fixed by ``seed``."""

    seed: int = 0

    @nn.compact
    def factors(self, num_channels: int) -> tuple[jax.Array, ...]:
        """``(P, L, U', log_s)`` with W = P L U', U' = U + diag(sign_s exp(log_s))."""
        p, l0, u0, sign_s, log_s0 = lu_init(num_channels, self.seed)
        lower = self.param("lower", lambda _key: jnp.asarray(l0, jnp.float32))  # [C, C]
        upper = self.param("upper", lambda _key: jnp.asarray(u0, jnp.float32))  # [C, C]
        log_s = self.param("log_s", lambda _key: jnp.asarray(log_s0, jnp.float32))  # [C]
        dtype = lower.dtype
        strict = np.tril(np.ones((num_channels, num_channels)), -1)
        l_mat = lower * jnp.asarray(strict, dtype) + jnp.eye(num_channels, dtype=dtype)
        u_mat = upper * jnp.asarray(strict.T, dtype) + jnp.diag(jnp.asarray(sign_s, dtype)
                                                                * jnp.exp(log_s))
        return jnp.asarray(p, dtype), l_mat, u_mat, log_s

    def __call__(self, x, cond=None):
        return self.forward_and_log_det(x, cond)

    def forward_and_log_det(self, x: jax.Array, cond: jax.Array | None = None):
        _check_image("Invertible1x1Conv", x)
        p, l_mat, u_mat, log_s = self.factors(x.shape[-1])
        w = p @ l_mat @ u_mat  # [C, C]
        log_det = x.shape[1] * x.shape[2] * jnp.sum(log_s)
        return jnp.einsum("ij,bhwj->bhwi", w, x), jnp.full(x.shape[:1], log_det)

    def inverse_and_log_det(self, y: jax.Array, cond: jax.Array | None = None):
        _check_image("Invertible1x1Conv", y)
        p, l_mat, u_mat, log_s = self.factors(y.shape[-1])
        # W^-1 = U'^-1 L^-1 P^T by two triangular solves
        l_inv_pt = jax.scipy.linalg.solve_triangular(l_mat, p.T, lower=True, unit_diagonal=True)
        w_inv = jax.scipy.linalg.solve_triangular(u_mat, l_inv_pt, lower=False)  # [C, C]
        log_det = -y.shape[1] * y.shape[2] * jnp.sum(log_s)
        return jnp.einsum("ij,bhwj->bhwi", w_inv, y), jnp.full(y.shape[:1], log_det)


# ---- logit ---------------------------------------------
def _check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha < 0.5:
        raise ValueError(f"alpha must be in [0, 0.5), got {alpha}")


def logit_transform(x: jax.Array, alpha: float = 0.05) -> tuple[jax.Array, jax.Array]:
    """y = logit(p), p = alpha + (1 - 2 alpha) x, for x in [0, 1]^D (Real NVP sec. 4.1), and
    log|det dy/dx| = sum_d [log(1 - 2 alpha) - log p_d - log(1 - p_d)]  ``[B]``."""
    _check_alpha(alpha)
    p = alpha + (1.0 - 2.0 * alpha) * x
    y = jnp.log(p) - jnp.log1p(-p)
    log_det = jnp.log1p(-2.0 * alpha) - jnp.log(p) - jnp.log1p(-p)
    return y, _sum_per_example(log_det)


def logit_inverse(y: jax.Array, alpha: float = 0.05) -> tuple[jax.Array, jax.Array]:
    """x = (sigmoid(y) - alpha) / (1 - 2 alpha), the inverse of :func:`logit_transform`, and
    log|det dx/dy| = sum_d [log sigmoid(y_d) + log sigmoid(-y_d) - log(1 - 2 alpha)]  ``[B]``."""
    _check_alpha(alpha)
    x = (jax.nn.sigmoid(y) - alpha) / (1.0 - 2.0 * alpha)
    log_det = jax.nn.log_sigmoid(y) + jax.nn.log_sigmoid(-y) - jnp.log1p(-2.0 * alpha)
    return x, _sum_per_example(log_det)


class LogitTransform(nn.Module):
    """:func:`logit_transform` as a bijector (inverse :func:`logit_inverse`)."""

    alpha: float = 0.05

    def __call__(self, x, cond=None):
        return self.forward_and_log_det(x, cond)

    def forward_and_log_det(self, x: jax.Array, cond: jax.Array | None = None):
        return logit_transform(x, self.alpha)

    def inverse_and_log_det(self, y: jax.Array, cond: jax.Array | None = None):
        return logit_inverse(y, self.alpha)


# ---- composition ---------------------------------------------------------------------------
class Chain(nn.Module):
    """``layers`` applied in order by the forward, log-dets summed; the inverse runs them in
    reverse. ``cond`` is passed to every layer as it is (after a squeeze, a conditioned
    coupling needs cond at its own resolution: build one chain per scale)."""

    layers: Sequence[nn.Module]

    def __call__(self, x, cond=None):
        return self.forward_and_log_det(x, cond)

    def forward_and_log_det(self, x: jax.Array, cond: jax.Array | None = None):
        log_det = jnp.zeros(x.shape[:1], x.dtype)
        for layer in self.layers:
            x, ld = layer.forward_and_log_det(x, cond)
            log_det = log_det + ld
        return x, log_det

    def inverse_and_log_det(self, y: jax.Array, cond: jax.Array | None = None):
        log_det = jnp.zeros(y.shape[:1], y.dtype)
        for layer in reversed(self.layers):
            y, ld = layer.inverse_and_log_det(y, cond)
            log_det = log_det + ld
        return y, log_det
