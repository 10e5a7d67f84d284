"""Exact log-likelihoods through the probability flow ODE (Song et al. 2021, Appendix D.2).

Along the ODE dx/dt = f~(x, t) = f(x, t) - 1/2 g(t)^2 grad log p_t(x) (eq. 13), the
instantaneous change of variables (Chen et al. 2018) gives d log p_t(x_t) / dt = -div f~(x_t, t),
so

    log p_0(x_0) = log p_T(x_T) + int_0^T div f~(x_t, t) dt,

with p_T replaced by the prior. The state (x, int div) is integrated from eps to T in one
`lax.scan` (:func:`gmzoo.diffusion.solvers.odeint`). The divergence is exact (D
Jacobian-vector products, for small D) or Hutchinson's estimate div f~ ~ v^T (df~/dx) v with one
probe v per example, E[v v^T] = I, drawn once and held fixed along the path.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from gmzoo.diffusion.sde import SDE, ScoreFn
from gmzoo.diffusion.solvers import GRIDS, ODE_METHODS, odeint, time_grid

TRACES = ("hutchinson", "exact")
PROBES = ("rademacher", "gaussian")


def exact_divergence(fn, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`(fn(x), div)` with div_b = sum_i d fn(x)_bi / d x_bi `[B]` for an `fn: [B, ...] ->
    [B, ...]` acting on each example separately: one `jax.jvp` per input dimension (vmapped)."""
    batch, dims = x.shape[0], math.prod(x.shape[1:])
    basis = jnp.eye(dims, dtype=x.dtype).reshape(dims, 1, *x.shape[1:])  # [D, 1, ...]

    def column(e):  # J e for every example at once: [B, D]
        return jax.jvp(fn, (x,), (jnp.broadcast_to(e, x.shape),))[1].reshape(batch, dims)

    jac = jax.vmap(column)(basis)  # [D, B, D]: jac[i, b, j] = d fn_bj / d x_bi
    return fn(x), jnp.einsum("ibi->b", jac)


def hutchinson_divergence(fn, x: jax.Array, probe: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`(fn(x), div)` with Hutchinson's unbiased estimate div_b = v_b^T (d fn_b / d x_b) v_b `[B]`
    (one forward-mode JVP); `probe` v `[B, ...]` with E[v v^T] = I."""
    out, jv = jax.jvp(fn, (x,), (probe,))
    return out, jnp.sum((jv * probe).reshape(x.shape[0], -1), axis=-1)


def ode_log_likelihood(sde: SDE, score_fn: ScoreFn, x: jax.Array, key: jax.Array | None = None, *,
                       num_steps: int = 100, method: str = "rk4", trace: str = "hutchinson",
                       probe: str = "rademacher", eps: float = 1e-5,
                       grid: str = "logsnr") -> tuple[jax.Array, jax.Array]:
    """log p_eps(x) in nats, `[B]`, by the formula above, and the prior-space point z = x_T
    `[B, ...]`.

    `num_steps` fixed steps of `method` from t = eps to T on a `grid` equally spaced in log SNR
    (default; the VP drift is stiff near t = 0, see :func:`gmzoo.diffusion.solvers.time_grid`)
    or in t ("uniform"); `trace` "exact" (needs no key) or "hutchinson" with a `probe`
    ("rademacher" or "gaussian") drawn from `key`.
    """
    if trace not in TRACES:
        raise ValueError(f"trace={trace!r}; choose one of {', '.join(TRACES)}")
    if probe not in PROBES:
        raise ValueError(f"probe={probe!r}; choose one of {', '.join(PROBES)}")
    if method not in ODE_METHODS:
        raise ValueError(f"method={method!r}; choose one of {', '.join(ODE_METHODS)}")
    if grid not in GRIDS:
        raise ValueError(f"grid={grid!r}; choose one of {', '.join(GRIDS)}")
    if trace == "hutchinson" and key is None:
        raise ValueError("trace='hutchinson' needs a key for the probe")
    flow = sde.reverse(score_fn, probability_flow=True)
    if trace == "hutchinson":
        v = (jax.random.rademacher(key, x.shape, x.dtype) if probe == "rademacher"
             else jax.random.normal(key, x.shape, x.dtype))  # [B, ...]

    def dynamics(state, t):
        y, _ = state
        drift = lambda z: flow.sde(z, t)[0]
        if trace == "exact":
            return exact_divergence(drift, y)
        return hutchinson_divergence(drift, y, v)

    ts = time_grid(sde, num_steps, eps, grid)[::-1].astype(x.dtype)  # eps -> T
    z, delta_logp = odeint(dynamics, (x, jnp.zeros(x.shape[:1], x.dtype)), ts, method)
    return sde.prior_logp(z) + delta_logp, z


def bits_per_dim(nll_nats: jax.Array, num_dims: int) -> jax.Array:
    """nll / (D log 2): negative log-likelihood in bits per dimension. (For discrete data add
    the dequantisation offset, e.g. log2(256) per dim when pixels were scaled to [0, 1].)"""
    return nll_nats / (num_dims * math.log(2.0))
