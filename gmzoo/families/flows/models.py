"""Multi-scale image flows built from :mod:`gmzoo.families.flows.bijectors`: Real NVP (Dinh et
al. 2017, "Density estimation using Real NVP", sec. 3.6) and Glow (Kingma & Dhariwal 2018,
"Glow: Generative Flow with Invertible 1x1 Convolutions", sec. 3 and fig. 2).

Both map continuous images ``x [B, H, W, C]`` (NHWC, in the flow's input space: the family
glue dequantizes and applies the logit first) to a list of latents, one factored out per scale
and the last one, with

    log p(x) = sum_i log N(z_i; mu_i, sigma_i^2) + sum_k log|det J_k|         (change of variables)

where the log-dets are every bijector's and (mu_i, sigma_i) are (0, 1) for Real NVP, and for
Glow a learned conditional prior of each factored-out half given the kept half (Glow's "split
with a learned prior") and a learned per-channel prior of the last latent. Methods (Linen
methods, ``__call__`` is ``log_prob``, so ``model.init(key, x)`` runs the forward and
ActNorm's data-dependent init sees ``x``):

    log_prob(x, cond=None) -> [B]                          log p(x) in nats
    encode(x, cond=None, standardized=False) -> [z_0, ..., z_L]   the latents, in order
    decode(latents, cond=None, standardized=False) -> x     the exact inverse of encode
    sample(key, shape, temperature=1.0, cond=None) -> x     [B, H, W, C] = shape
    latent_shapes(shape) -> [shape of z_0, ...]

``standardized=True`` uses eps_i = (z_i - mu_i) / sigma_i instead of z_i (Glow's eps), so
``sample`` is ``decode(T * eps, standardized=True)`` with eps ~ N(0, I): the temperature T
scales the std of every Gaussian (Glow sec. 5 / fig. 8) and T = 0 decodes the prior means.

Conditioning: ``cond [B, h, w, Cc]`` reaches every affine coupling, concatenated to its net's
input at the coupling's own resolution: :func:`cond_at` resizes it (``jax.image.resize``,
linear) to each scale's H x W, so a low-resolution image (SRFlow-like super-resolution) is
upsampled per scale, and a class-label embedding given as ``[B, 1, 1, Cc]`` is broadcast. The
models run one :class:`~gmzoo.families.flows.bijectors.Chain` per scale (a chain passes cond
unchanged) and hand each its own resized cond.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gmzoo.families.flows import bijectors as bj
from gmzoo.losses.likelihoods import gaussian_log_prob



def cond_at(cond: jax.Array | None, height: int, width: int) -> jax.Array | None:
    """``cond [B, h, w, Cc]`` at ``height x width``: as it is when (h, w) already match,
    broadcast when h = w = 1 (a label embedding ``emb[:, None, None, :]``), otherwise resized
    by ``jax.image.resize`` (linear; antialiased when shrinking)."""
    if cond is None:
        return None
    b, h, w, c = cond.shape
    if (h, w) == (height, width):
        return cond
    if (h, w) == (1, 1):
        return jnp.broadcast_to(cond, (b, height, width, c))
    return jax.image.resize(cond, (b, height, width, c), method="linear")


def _split(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(kept, factored out): the first and the second half of the channels."""
    c = x.shape[-1] // 2
    return x[..., :c], x[..., c:]


class MultiScaleFlow(nn.Module):
    """The methods shared by the multi-scale flows, derived from three a subclass provides:
    ``_encode(x, cond) -> (latents, means, log_stds, log_det [B])``,
    ``_decode(latents, cond, standardized) -> x`` and ``latent_shapes(shape)``."""

    def __call__(self, x, cond=None):
        return self.log_prob(x, cond)

    def _check(self, shape: Sequence[int], cond: jax.Array | None) -> None:
        if len(shape) != 4:
            raise ValueError(f"{type(self).__name__} takes images [B, H, W, C], got shape "
                             f"{tuple(shape)}")
        self.latent_shapes(shape)  # refuses H, W the scales cannot halve
        if cond is not None and (cond.ndim != 4 or cond.shape[0] != shape[0]):
            raise ValueError(f"cond must be [B, h, w, Cc] with B = {shape[0]} (resized to each "
                             f"scale; [B, 1, 1, Cc] for a label embedding), got shape "
                             f"{tuple(cond.shape)}")

    def log_prob(self, x: jax.Array, cond: jax.Array | None = None) -> jax.Array:
        """log p(x) in nats ``[B]``: the latents' Gaussian log-densities plus all log-dets."""
        self._check(x.shape, cond)
        latents, means, log_stds, log_det = self._encode(x, cond)
        log_pz = sum(gaussian_log_prob(z, m, s) for z, m, s in zip(latents, means, log_stds))
        return log_pz + log_det

    def encode(self, x: jax.Array, cond: jax.Array | None = None,
               standardized: bool = False) -> list[jax.Array]:
        """The latents ``[z_0, ..., z_L]`` (factored out at scale 0, 1, ..., then the last);
        with ``standardized``, eps_i = (z_i - mu_i) / sigma_i under their Gaussians."""
        self._check(x.shape, cond)
        latents, means, log_stds, _ = self._encode(x, cond)
        if not standardized:
            return latents
        return [(z - m) * jnp.exp(-s) for z, m, s in zip(latents, means, log_stds)]

    def decode(self, latents: Sequence[jax.Array], cond: jax.Array | None = None,
               standardized: bool = False) -> jax.Array:
        """x from the latents of :meth:`encode` (the same ``standardized``): its exact inverse."""
        latents = list(latents)
        n = len(self.latent_shapes(None))
        if len(latents) != n:
            raise ValueError(f"{type(self).__name__} decodes {n} latents, got {len(latents)}")
        if cond is not None and (cond.ndim != 4 or cond.shape[0] != latents[0].shape[0]):
            raise ValueError(f"cond must be [B, h, w, Cc] with B = {latents[0].shape[0]}, got "
                             f"shape {tuple(cond.shape)}")
        return self._decode(latents, cond, standardized)

    def sample(self, key: jax.Array, shape: Sequence[int], temperature: float = 1.0,
               cond: jax.Array | None = None) -> jax.Array:
        """x ``[B, H, W, C] = shape`` by decoding eps_i ~ N(0, T^2 I): every Gaussian's std
        scaled by the temperature T (Glow). One batched call; jit it with ``shape`` static."""
        shape = tuple(int(d) for d in shape)
        self._check(shape, cond)
        shapes = self.latent_shapes(shape)
        keys = jax.random.split(key, len(shapes))
        eps = [temperature * jax.random.normal(k, s) for k, s in zip(keys, shapes)]
        return self._decode(eps, cond, True)


class RealNVP(MultiScaleFlow):
    """Real NVP's multi-scale architecture (sec. 3.6, 4.1). Each of the first
    ``num_scales - 1`` scales: 3 checkerboard couplings (parity 0, 1, 0), squeeze, 3 channel
    couplings (parity 0, 1, 0), then half of the channels factored out (their standard normal
    log-density counted there); the last scale: 4 checkerboard couplings (parity 0, 1, 0, 1).
    ``actnorm`` puts an ActNorm before every coupling (a stand-in for the paper's batch norm).
    H and W must be divisible by 2^(num_scales - 1)."""

    num_scales: int = 3
    hidden: int = 64
    num_layers: int = 2  # ReLU conv layers of each coupling's net
    actnorm: bool = False

    def _check_fields(self) -> None:
        if self.num_scales < 1:
            raise ValueError(f"RealNVP needs num_scales >= 1, got {self.num_scales}")

    def setup(self):
        self._check_fields()

        def couplings(mask: str, n: int) -> bj.Chain:
            layers = []
            for k in range(n):
                if self.actnorm:
                    layers.append(bj.ActNorm())
                layers.append(bj.AffineCoupling(mask, k % 2, self.hidden, self.num_layers))
            return bj.Chain(layers)

        last = self.num_scales - 1
        self.checkerboard = [couplings("checkerboard", 4 if s == last else 3)
                             for s in range(self.num_scales)]
        self.channel = [couplings("channel", 3) for _ in range(last)]

    def latent_shapes(self, shape: Sequence[int] | None) -> list[tuple[int, ...]]:
        """The shapes of :meth:`encode`'s latents for an input ``shape`` (None: only their
        number is used)."""
        self._check_fields()
        if shape is None:
            return [()] * self.num_scales
        b, h, w, c = shape
        k = 2 ** (self.num_scales - 1)
        if h % k or w % k:
            raise ValueError(f"RealNVP with num_scales={self.num_scales} needs H and W "
                             f"divisible by {k}, got H={h}, W={w}")
        out = []
        for _ in range(self.num_scales - 1):
            h, w, c = h // 2, w // 2, 2 * c  # squeeze to 4C, factor out 2C
            out.append((b, h, w, c))
        return out + [(b, h, w, c)]

    def _encode(self, x, cond):
        log_det = jnp.zeros(x.shape[:1], x.dtype)
        latents = []
        for s in range(self.num_scales):
            x, ld = self.checkerboard[s].forward_and_log_det(x, cond_at(cond, *x.shape[1:3]))
            log_det = log_det + ld
            if s == self.num_scales - 1:
                break
            x = bj.squeeze(x)  # [B, H/2, W/2, 4C]
            x, ld = self.channel[s].forward_and_log_det(x, cond_at(cond, *x.shape[1:3]))
            log_det = log_det + ld
            x, z = _split(x)
            latents.append(z)
        latents.append(x)
        zeros = [jnp.zeros_like(z) for z in latents]
        return latents, zeros, zeros, log_det

    def _decode(self, latents, cond, standardized):
        del standardized  # standard normal: eps = z
        x = latents[-1]
        for s in reversed(range(self.num_scales)):
            if s < self.num_scales - 1:
                x = jnp.concatenate([x, latents[s]], -1)
                x, _ = self.channel[s].inverse_and_log_det(x, cond_at(cond, *x.shape[1:3]))
                x = bj.unsqueeze(x)
            x, _ = self.checkerboard[s].inverse_and_log_det(x, cond_at(cond, *x.shape[1:3]))
        return x


class SplitPrior(nn.Module):
    """Glow's split with a learned prior: (mean, log_std) of the factored-out half, each
    ``[B, H, W, C]``, from a zero-initialised 3x3 conv of the kept half ``[B, H, W, C]``
    (openai/glow's ``split2d_prior``): a standard normal at init."""

    @nn.compact
    def __call__(self, kept: jax.Array) -> tuple[jax.Array, jax.Array]:
        c = kept.shape[-1]
        out = nn.Conv(2 * c, (3, 3), kernel_init=nn.initializers.zeros, name="conv")(kept)
        return out[..., :c], out[..., c:]


class TopPrior(nn.Module):
    """A learned per-channel Gaussian (mean, log_std, zero at init) of the last latent,
    broadcast to ``z``'s shape (Glow's zero-init conv of zeros is this plus nothing)."""

    @nn.compact
    def __call__(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        c = z.shape[-1]
        mean = self.param("mean", nn.initializers.zeros, (c,))
        log_std = self.param("log_std", nn.initializers.zeros, (c,))
        return (jnp.broadcast_to(mean.astype(z.dtype), z.shape),
                jnp.broadcast_to(log_std.astype(z.dtype), z.shape))


class Glow(MultiScaleFlow):
    """Glow's multi-scale architecture (fig. 2). Each of ``num_levels`` levels: squeeze, then
    ``steps_per_level`` steps of [ActNorm, Invertible1x1Conv (seed ``seed + level * K + k``,
    each its own), AffineCoupling (channel mask, parity alternating)]; then, except at the last
    level, the second half of the channels is factored out under :class:`SplitPrior` of the
    kept first half. The last level's latent is under :class:`TopPrior`. H and W must be
    divisible by 2^num_levels."""

    num_levels: int = 3
    steps_per_level: int = 32
    hidden: int = 512
    num_layers: int = 2  # ReLU conv layers of each coupling's net (Glow: 2)
    seed: int = 0  # first seed of the 1x1 convolutions' fixed P and sign(s)

    def _check_fields(self) -> None:
        if self.num_levels < 1 or self.steps_per_level < 1:
            raise ValueError(f"Glow needs num_levels >= 1 and steps_per_level >= 1, got "
                             f"num_levels={self.num_levels}, "
                             f"steps_per_level={self.steps_per_level}")

    def setup(self):
        self._check_fields()
        k_steps = self.steps_per_level
        self.levels = [
            bj.Chain([layer for k in range(k_steps) for layer in (
                bj.ActNorm(), bj.Invertible1x1Conv(seed=self.seed + level * k_steps + k),
                bj.AffineCoupling("channel", k % 2, self.hidden, self.num_layers))])
            for level in range(self.num_levels)]
        self.split_priors = [SplitPrior() for _ in range(self.num_levels - 1)]
        self.top_prior = TopPrior()

    def latent_shapes(self, shape: Sequence[int] | None) -> list[tuple[int, ...]]:
        """The shapes of :meth:`encode`'s latents for an input ``shape`` (None: only their
        number is used)."""
        self._check_fields()
        if shape is None:
            return [()] * self.num_levels
        b, h, w, c = shape
        k = 2 ** self.num_levels
        if h % k or w % k:
            raise ValueError(f"Glow with num_levels={self.num_levels} needs H and W divisible "
                             f"by {k}, got H={h}, W={w}")
        out = []
        for _ in range(self.num_levels - 1):
            h, w, c = h // 2, w // 2, 2 * c  # squeeze to 4C, factor out 2C
            out.append((b, h, w, c))
        return out + [(b, h // 2, w // 2, 4 * c)]

    def _encode(self, x, cond):
        log_det = jnp.zeros(x.shape[:1], x.dtype)
        latents, means, log_stds = [], [], []
        for level in range(self.num_levels):
            x = bj.squeeze(x)  # [B, H/2, W/2, 4C]
            x, ld = self.levels[level].forward_and_log_det(x, cond_at(cond, *x.shape[1:3]))
            log_det = log_det + ld
            if level < self.num_levels - 1:
                x, z = _split(x)
                mean, log_std = self.split_priors[level](x)
            else:
                z = x
                mean, log_std = self.top_prior(z)
            latents.append(z)
            means.append(mean)
            log_stds.append(log_std)
        return latents, means, log_stds, log_det

    def _decode(self, latents, cond, standardized):
        x = latents[-1]
        if standardized:
            mean, log_std = self.top_prior(x)
            x = mean + jnp.exp(log_std) * x
        for level in reversed(range(self.num_levels)):
            if level < self.num_levels - 1:
                z = latents[level]
                if standardized:
                    mean, log_std = self.split_priors[level](x)
                    z = mean + jnp.exp(log_std) * z
                x = jnp.concatenate([x, z], -1)
            x, _ = self.levels[level].inverse_and_log_det(x, cond_at(cond, *x.shape[1:3]))
            x = bj.unsqueeze(x)
        return x


# Variants (the tiny ones for tests). Real NVP's CIFAR-10 net: 3 scales with 8 residual blocks
# of 64 features per coupling (ours: plain conv nets); Glow's: 3 levels, 32 steps, 512 hidden.
RealNVPTiny = functools.partial(RealNVP, num_scales=2, hidden=8, num_layers=1)
GlowTiny = functools.partial(Glow, num_levels=2, steps_per_level=2, hidden=8, num_layers=1)
