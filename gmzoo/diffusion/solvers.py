"""Samplers for the reverse SDE and the probability flow ODE (Song et al. 2021, Section 4 and
Appendix G), each one `jax.lax.scan` over a time grid.

Every sampler has the zoo's one signature (see :mod:`gmzoo.samplers`),

    sampler(score_fn, key, x_T, sde, ts, *, settings) -> x_0 [B, ...]

the model function `score_fn(x [B, ...], t [B]) -> [B, ...]`, a key, the starting point `x_T`
(e.g. `sde.prior_sample(key, shape)`), then the process, an SDE from :mod:`gmzoo.diffusion.sde`,
and a decreasing grid `ts [N + 1]` from `sde.T` down to a small eps (:func:`time_grid`), then
keyword-only settings. Step i goes from `ts[i]` to `ts[i + 1]` with `dt_i = ts[i] - ts[i + 1] > 0`;
its key is `split(key, N)[i]`, a scan input. :func:`ode_sample` is deterministic: it takes the key
only to share the signature, ignores it and accepts None. The stochastic samplers return the
noise-free mean of their last step ("denoising", as in score_sde). With `return_trajectory=True`
they also return the states after every step, `[N, B, ...]`. Nothing here is jitted: jit the
caller (the SDE is a static pytree, so it may be an ordinary argument).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gmzoo.diffusion.sde import SDE, ScoreFn, SubVPSDE, VPSDE, batch_time
from gmzoo.nn.tree import expand_like

PREDICTORS = ("reverse_diffusion", "euler_maruyama")
ODE_METHODS = ("euler", "heun", "rk4")


GRIDS = ("uniform", "logsnr")


def time_grid(sde: SDE, num_steps: int, eps: float = 1e-3, spacing: str = "uniform") -> jax.Array:
    """`num_steps + 1` decreasing times from `sde.T` down to `eps`, `[num_steps + 1]`.

    `spacing="uniform"` is equally spaced in t (score_sde's samplers). `"logsnr"` is equally
    spaced in log SNR = log(alpha_t^2 / sigma_t^2), found by interpolating the SNR on a fine
    geometric grid: for the VP and sub-VP SDEs the probability-flow drift grows like 1 / t as
    t -> 0 (its divergence ~ D / t), so uniform steps badly over-integrate the first interval
    (100 RK4 steps from 1e-5 overstate a log-density by ~0.5 nats in 3 dimensions of std 0.02),
    while log-SNR steps are geometric there. For the VE SDE log SNR = -2 log sigma_t is linear
    in t and both grids coincide. "logsnr" needs eps > 0.
    """
    if spacing not in GRIDS:
        raise ValueError(f"spacing={spacing!r}; choose one of {', '.join(GRIDS)}")
    if num_steps < 1 or not 0.0 <= eps < sde.T or (spacing == "logsnr" and eps <= 0.0):
        raise ValueError(f"time_grid needs num_steps >= 1 and {'0 <' if spacing == 'logsnr' else '0 <='}"
                         f" eps < T={sde.T}, got num_steps={num_steps}, eps={eps}")
    dtype = jnp.result_type(float)
    if spacing == "uniform":
        return jnp.asarray(np.linspace(sde.T, eps, num_steps + 1), dtype)
    fine = jnp.asarray(np.geomspace(sde.T, eps, 8193), dtype)  # decreasing t, increasing SNR
    alpha, sigma = sde.marginal_coeffs(fine)
    log_snr = 2.0 * (jnp.log(alpha) - jnp.log(sigma))
    targets = jnp.linspace(log_snr[0], log_snr[-1], num_steps + 1)
    ts = jnp.interp(targets, log_snr, fine)
    return ts.at[0].set(sde.T).at[-1].set(eps)


def _steps(ts: jax.Array, key: jax.Array | None = None):
    """Scan inputs: (t_i [N], dt_i [N]) and, with a key, per-step keys [N]."""
    ts = jnp.asarray(ts)
    steps = (ts[:-1], ts[:-1] - ts[1:])
    return steps if key is None else (*steps, jax.random.split(key, ts.shape[0] - 1))


def _scan_sampler(step, x_T: jax.Array, inputs, return_trajectory: bool):
    """Run `step((x, x_mean), inputs_i) -> (x, x_mean)`; return the last x_mean."""

    def body(carry, inp):
        carry = step(carry, inp)
        return carry, (carry[0] if return_trajectory else None)

    (_, x_mean), traj = jax.lax.scan(body, (x_T, x_T), inputs)
    return (x_mean, traj) if return_trajectory else x_mean


def euler_maruyama_step(sde: SDE, score_fn: ScoreFn, key: jax.Array, x: jax.Array, t: jax.Array,
                        dt: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Reverse SDE step t -> t - dt: x_mean = x - [f - g^2 score] dt, x = x_mean + g sqrt(dt) z.
    Returns `(x, x_mean)`."""
    drift, diffusion = sde.reverse(score_fn).sde(x, t)
    x_mean = x - drift * dt
    noise = jax.random.normal(key, x.shape, x.dtype)
    return x_mean + expand_like(diffusion, x) * jnp.sqrt(dt) * noise, x_mean


def reverse_diffusion_step(sde: SDE, score_fn: ScoreFn, key: jax.Array, x: jax.Array,
                           t: jax.Array, dt: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Reverse-diffusion predictor (Appendix E): x_mean = x - f_i^fwd + G_i^2 score,
    x = x_mean + G_i z with the SDE's own discretisation (f_i, G_i). Returns `(x, x_mean)`."""
    f, G = sde.reverse(score_fn).discretize(x, t, dt)
    x_mean = x - f
    return x_mean + expand_like(G, x) * jax.random.normal(key, x.shape, x.dtype), x_mean


_PREDICTOR_STEPS = {"reverse_diffusion": reverse_diffusion_step,
                    "euler_maruyama": euler_maruyama_step}


def euler_maruyama(score_fn: ScoreFn, key: jax.Array, x_T: jax.Array, sde: SDE, ts: jax.Array, *,
                   return_trajectory: bool = False):
    """Euler-Maruyama on the reverse SDE (eq. 6) over `ts`; returns x_0 `[B, ...]`."""

    def step(carry, inp):
        t, dt, k = inp
        return euler_maruyama_step(sde, score_fn, k, carry[0], batch_time(t, x_T), dt)

    return _scan_sampler(step, x_T, _steps(ts, key), return_trajectory)


def reverse_diffusion(score_fn: ScoreFn, key: jax.Array, x_T: jax.Array, sde: SDE, ts: jax.Array,
                      *, return_trajectory: bool = False):
    """Reverse-diffusion sampler (Song et al. 2021, Appendix E): ancestral-like steps with the
    SDE's discretisation (DDPM's for VP, NCSN's for VE); returns x_0 `[B, ...]`."""

    def step(carry, inp):
        t, dt, k = inp
        return reverse_diffusion_step(sde, score_fn, k, carry[0], batch_time(t, x_T), dt)

    return _scan_sampler(step, x_T, _steps(ts, key), return_trajectory)


def langevin_corrector_step(score_fn: ScoreFn, key: jax.Array, x: jax.Array, t: jax.Array, *,
                            snr: float,
                            alpha: jax.Array | float = 1.0) -> tuple[jax.Array, jax.Array]:
    """One Langevin MCMC step at fixed t (Algorithms 4-5 of Song et al. 2021):

        eps = 2 alpha (snr ||z|| / ||score||)^2,   x_mean = x + eps score,
        x = x_mean + sqrt(2 eps) z

    with the norms averaged over the batch (as score_sde does) and alpha = 1 - beta_i for VP-type
    SDEs, 1 for VE. Returns `(x, x_mean)`.
    """
    grad = score_fn(x, t)
    noise = jax.random.normal(key, x.shape, x.dtype)
    grad_norm = jnp.mean(jnp.linalg.norm(grad.reshape(x.shape[0], -1), axis=-1))
    noise_norm = jnp.mean(jnp.linalg.norm(noise.reshape(x.shape[0], -1), axis=-1))
    step_size = 2.0 * alpha * jnp.square(snr * noise_norm / grad_norm)
    x_mean = x + step_size * grad
    return x_mean + jnp.sqrt(2.0 * step_size) * noise, x_mean


def _langevin_alpha(sde: SDE, t: jax.Array, dt: jax.Array) -> jax.Array:
    """1 - beta_i = (alpha(t) / alpha(t - dt))^2 for VP-type SDEs (score_sde's `sde.alphas`),
    else 1."""
    if isinstance(sde, (VPSDE, SubVPSDE)):
        alpha_prev = sde.marginal_coeffs(jnp.maximum(t - dt, 0.0))[0]
        return jnp.square(sde.marginal_coeffs(t)[0] / alpha_prev)
    return jnp.ones_like(t)


def pc_sampler(score_fn: ScoreFn, key: jax.Array, x_T: jax.Array, sde: SDE, ts: jax.Array, *,
               predictor: str = "reverse_diffusion", corrector_steps: int = 1, snr: float = 0.16,
               return_trajectory: bool = False):
    """Predictor-corrector sampler (Algorithm 1 of Song et al. 2021): at each t_i,
    `corrector_steps` Langevin steps at t_i, then one predictor step t_i -> t_{i+1}
    (`predictor` in PREDICTORS). Returns x_0 `[B, ...]`."""
    if predictor not in _PREDICTOR_STEPS:
        raise ValueError(f"predictor={predictor!r}; choose one of {', '.join(PREDICTORS)}")
    if corrector_steps < 0:
        raise ValueError(f"corrector_steps must be >= 0, got {corrector_steps}")
    predictor_step = _PREDICTOR_STEPS[predictor]

    def step(carry, inp):
        t, dt, k = inp
        x, tb = carry[0], batch_time(t, x_T)
        k_pred, k_corr = jax.random.split(k)
        if corrector_steps:
            alpha = _langevin_alpha(sde, t, dt)

            def correct(x, kc):
                return langevin_corrector_step(score_fn, kc, x, tb, snr=snr, alpha=alpha)[0], None

            x, _ = jax.lax.scan(correct, x, jax.random.split(k_corr, corrector_steps))
        return predictor_step(sde, score_fn, k_pred, x, tb, dt)

    return _scan_sampler(step, x_T, _steps(ts, key), return_trajectory)


def _ode_step(f: Callable, x, t: jax.Array, h: jax.Array, method: str):
    """One fixed step of size h (signed) of dx/dt = f(x, t) for a pytree x."""
    axpy = lambda a, dx, y: jax.tree.map(lambda yi, di: yi + a * di, y, dx)
    k1 = f(x, t)
    if method == "euler":
        return axpy(h, k1, x)
    if method == "heun":
        k2 = f(axpy(h, k1, x), t + h)
        return jax.tree.map(lambda xi, a, b: xi + 0.5 * h * (a + b), x, k1, k2)
    k2 = f(axpy(0.5 * h, k1, x), t + 0.5 * h)
    k3 = f(axpy(0.5 * h, k2, x), t + 0.5 * h)
    k4 = f(axpy(h, k3, x), t + h)
    return jax.tree.map(lambda xi, a, b, c, d: xi + h / 6.0 * (a + 2.0 * b + 2.0 * c + d),
                        x, k1, k2, k3, k4)


def odeint(f: Callable, x0, ts: jax.Array, method: str = "rk4", *, return_trajectory: bool = False):
    """Fixed-step solution of dx/dt = f(x, t) from ts[0] to ts[-1] (either direction), x any
    pytree, t a scalar: Euler (order 1), Heun's trapezoidal RK2 (order 2) or classical RK4
    (order 4), one `lax.scan` over the N steps. Returns x(ts[-1]) (and the states after every
    step, leading axis N, with `return_trajectory`)."""
    if method not in ODE_METHODS:
        raise ValueError(f"method={method!r}; choose one of {', '.join(ODE_METHODS)}")
    ts = jnp.asarray(ts)

    def body(x, inp):
        t, h = inp
        x = _ode_step(f, x, t, h, method)
        return x, (x if return_trajectory else None)

    x, traj = jax.lax.scan(body, x0, (ts[:-1], ts[1:] - ts[:-1]))
    return (x, traj) if return_trajectory else x


def ode_sample(score_fn: ScoreFn, key: jax.Array | None, x_T: jax.Array, sde: SDE, ts: jax.Array,
               *, method: str = "rk4", return_trajectory: bool = False):
    """Integrate the probability flow ODE dx/dt = f - 1/2 g^2 score (eq. 13) along `ts` (from T
    down to eps) with `odeint`; returns x_0 `[B, ...]`. Deterministic: `key` is there only for
    the shared signature and is ignored (pass None or any key; the output does not change)."""
    del key  # deterministic
    flow = sde.reverse(score_fn, probability_flow=True)
    return odeint(lambda x, t: flow.sde(x, t)[0], x_T, ts, method,
                  return_trajectory=return_trajectory)
