"""Variational dequantization (Ho et al. 2019, "Flow++", sec. 3.1; the uvadlc JAX flows
tutorial): a density on [0, 1)^D bounds the likelihood of integer images through a learned
dequantizer q(u | x) instead of uniform noise.

A flow density p of x' in [0, 1)^D defines a model of integer images x in {0..L-1}^D,
P(x) = int_{[0,1)^D} p((x + u) / L) L^-D du, and for any density q(u | x) on [0, 1)^D
(Jensen's inequality)

    log P(x) >= E_{u ~ q(u|x)} [ log p((x + u) / L) - D log L - log q(u | x) ]    (nats)   (1)

Uniform dequantization is q = 1 (the data space's ``data.dequantize=true``, which adds D log L
at evaluation); here q is learned and (1) already holds D log L, so the data space is the
integer levels (``data.scale=levels data.dequantize=false``).

:class:`Dequantizer` is q: standard logistic noise eps, a conditional coupling flow g(.; x)
conditioned on the image through a small conv net, then a sigmoid,

    eps ~ Logistic(0, 1)^D,   v = g(eps; x),   u = sigmoid(v)  in [0, 1)^D
    log q(u | x) = log p_eps(eps) - log|det dg/deps| - sum_d log sigmoid'(v_d)             (2)

with log p_eps(e) = sum_d log sigmoid(e_d) + log sigmoid(-e_d) = the sigmoid's own log-det
(the logistic density is the sigmoid's derivative). Logistic rather than Flow++'s Gaussian
noise, so that q starts exactly uniform: the couplings' last layers are zero, g is the
identity at init, and sigmoid(eps) ~ U(0, 1) exactly, so log q = 0 and (1) equals the
uniform-dequantization figure for the same u. eps = logit(U) with U drawn as
:func:`gmzoo.data.transforms.dequantize_uniform` draws its noise (``jax.random.uniform`` of the
same key, 0 moved to the smallest normal float), so at init the same key gives the same u
(to rounding). u is clipped below 1 (float32 rounds sigmoid(v) up to 1 for v > 17).

:class:`VariationalDequantizedFlow` puts q in front of a flow of x' (a
:class:`~gmzoo.families.flows.family.ImageFlow`): ``bound(x, key, label) -> [B]`` is (1) with
one u per example; the importance-weighted estimate log (1/K) sum_k exp(bound_k) (a tighter
bound, Ho et al. sec. 3.1) is the family's second held-out figure.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from gmzoo.families.flows import bijectors


def logistic_noise(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """eps = logit(U) ~ Logistic(0, 1), ``[shape]`` float32, U = ``jax.random.uniform(key,
    shape)`` (as :func:`~gmzoo.data.transforms.dequantize_uniform` draws it; a 0 becomes the
    smallest normal float, so eps is finite)."""
    tiny = jnp.finfo(jnp.float32).tiny
    u = jax.random.uniform(key, shape, jnp.float32, minval=tiny, maxval=1.0)
    return jnp.log(u) - jnp.log1p(-u)


class Dequantizer(nn.Module):
    """q(u | x) of eq. (2): ``num_couplings`` conditional checkerboard affine couplings (parity
    alternating; nets of ``num_layers`` ReLU convs of ``hidden`` channels, zero last layer) on
    logistic noise, conditioned on features ``[B, H, W, hidden]`` of the image (two 3x3 ReLU
    convs of x scaled to [-1, 1]), then a sigmoid. Exactly uniform at init.

    ``__call__(x, eps) -> (u, log q(u | x))``: x ``[B, H, W, C]`` integer levels 0..L-1 (as
    floats), eps ``[B, H, W, C]`` the noise; u ``[B, H, W, C]`` in [0, 1), log q ``[B]``.
    ``sample(x, key)``: the same with eps = :func:`logistic_noise` (key).
    """

    num_levels: int
    num_couplings: int = 4
    hidden: int = 16
    num_layers: int = 1

    def setup(self):
        if self.num_levels < 2 or self.num_couplings < 1:
            raise ValueError(f"Dequantizer needs num_levels >= 2 and num_couplings >= 1, got "
                             f"num_levels={self.num_levels}, "
                             f"num_couplings={self.num_couplings}")
        self.features = [nn.Conv(self.hidden, (3, 3)) for _ in range(2)]
        self.couplings = bijectors.Chain([
            bijectors.AffineCoupling("checkerboard", k % 2, self.hidden, self.num_layers)
            for k in range(self.num_couplings)])

    def condition(self, x: jax.Array) -> jax.Array:
        """Features ``[B, H, W, hidden]`` of the levels x ``[B, H, W, C]``."""
        h = 2.0 * x / (self.num_levels - 1) - 1.0  # [-1, 1]
        for conv in self.features:
            h = nn.relu(conv(h))
        return h

    def __call__(self, x: jax.Array, eps: jax.Array) -> tuple[jax.Array, jax.Array]:
        if x.shape != eps.shape:
            raise ValueError(f"the noise must be shaped like x {tuple(x.shape)}, got "
                             f"{tuple(eps.shape)}")
        eps = eps.astype(x.dtype)
        log_p_eps = bijectors.logit_inverse(eps, 0.0)[1]  # logistic density = sigmoid'  [B]
        v, log_det_g = self.couplings.forward_and_log_det(eps, self.condition(x))
        u, log_det_sigmoid = bijectors.logit_inverse(v, 0.0)  # sigmoid and its log-det  [B]
        u = jnp.minimum(u, jnp.asarray(1.0 - 2.0 ** -24, u.dtype))  # [0, 1), see the docstring
        return u, log_p_eps - log_det_g - log_det_sigmoid

    def sample(self, x: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self(x, logistic_noise(key, x.shape))


class VariationalDequantizedFlow(nn.Module):
    """A flow of x' in [0, 1)^D (``flow``: a module with ``log_prob(x', label) -> [B]`` and
    ``sample(key, shape, temperature, label) -> x'``) as a model of integer images through the
    dequantizer q (``dequantizer``), with ``num_levels`` L:

    ``bound(x, key, label) -> [B]``, eq. (1) with one u ~ q(u | x) per example (nats; D log L
    included), x ``[B, H, W, C]`` levels 0..L-1; ``__call__`` is ``bound``, so ``init(key, x,
    noise_key)`` fits ActNorm on the dequantized (x + u) / L. ``sample(...) -> [B, H, W, C]``
    integer levels floor(L x') (clipped to 0..L-1) of x' ~ p.
    """

    flow: nn.Module
    dequantizer: Dequantizer
    num_levels: int

    def __call__(self, x: jax.Array, key: jax.Array, label: jax.Array | None = None
                 ) -> jax.Array:
        return self.bound(x, key, label)

    def bound(self, x: jax.Array, key: jax.Array, label: jax.Array | None = None
              ) -> jax.Array:
        u, log_q = self.dequantizer.sample(x, key)  # [B, H, W, C], [B]
        dims = math.prod(x.shape[1:])
        return (self.flow.log_prob((x + u) / self.num_levels, label)
                - dims * math.log(self.num_levels) - log_q)

    def sample(self, key: jax.Array, shape: tuple[int, ...], temperature: float,
               label: jax.Array | None = None) -> jax.Array:
        x01 = self.flow.sample(key, shape, temperature, label)  # [0, 1]
        return jnp.clip(jnp.floor(x01 * self.num_levels), 0, self.num_levels - 1)
