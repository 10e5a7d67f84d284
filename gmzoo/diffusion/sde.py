"""Continuous-time diffusions as SDEs (Song et al. 2021, "Score-Based Generative Modeling through
Stochastic Differential Equations", Sections 3-4 and Appendices B, E).

Forward SDE, eq. (5):            dx = f(x, t) dt + g(t) dw,                 t in [0, T]
Reverse SDE, eq. (6):            dx = [f(x, t) - g(t)^2 grad_x log p_t(x)] dt + g(t) dw_bar
Probability flow ODE, eq. (13):  dx = [f(x, t) - 1/2 g(t)^2 grad_x log p_t(x)] dt

All three processes here are linear, f(x, t) = f(t) x, so the perturbation kernel is Gaussian:
p_0t(x_t | x_0) = N(alpha(t) x_0, sigma(t)^2 I) with

    VP     beta(t) = beta_min + t (beta_max - beta_min),  f = -1/2 beta(t),  g = sqrt(beta(t)),
           alpha(t) = exp(-1/2 int_0^t beta),              sigma(t)^2 = 1 - alpha(t)^2
    sub-VP f = -1/2 beta(t),  g = sqrt(beta(t) (1 - alpha(t)^4)),
           alpha(t) as VP,                                 sigma(t) = 1 - alpha(t)^2
    VE     sigma(t) = sigma_min (sigma_max / sigma_min)^t,  f = 0,
           g = sigma(t) sqrt(2 log(sigma_max / sigma_min)),  alpha = 1

(VE: as in the paper, sigma(t) is the marginal std although the SDE started at a point gives
sqrt(sigma(t)^2 - sigma_min^2); the difference, sigma_min^2, is below any sampling error.)

Times `t` are `[B]` (or scalars, broadcast against the batch), states `x` are `[B, ...]`. An SDE is
a frozen dataclass of floats registered as a static pytree, so it can be passed to jitted
functions as an ordinary argument.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Protocol

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gmzoo.nn.tree import expand_like

ScoreFn = Callable[[jax.Array, jax.Array], jax.Array]  # (x [B, ...], t [B]) -> score [B, ...]
_LOG_2PI = math.log(2.0 * math.pi)


def batch_time(t: ArrayLike, x: jax.Array) -> jax.Array:
    """`t` as a `[B]` float array for the batch `x` `[B, ...]`."""
    return jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])


def _gaussian_logp(z: jax.Array, std: float) -> jax.Array:
    """log N(z; 0, std^2 I) summed over all but the batch axis, `[B]`."""
    d = math.prod(z.shape[1:])
    sq = jnp.sum(jnp.square(z).reshape(z.shape[0], -1), axis=-1)
    return -0.5 * d * (_LOG_2PI + 2.0 * math.log(std)) - 0.5 * sq / std**2


class SDE(Protocol):
    """What solvers, the likelihood and the DSM loss use (see the module docstring)."""

    T: float

    def sde(self, x: jax.Array, t: ArrayLike) -> tuple[jax.Array, jax.Array]: ...
    def marginal_coeffs(self, t: ArrayLike) -> tuple[jax.Array, jax.Array]: ...
    def marginal(self, x0: jax.Array, t: ArrayLike) -> tuple[jax.Array, jax.Array]: ...
    def prior_sample(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array: ...
    def prior_logp(self, z: jax.Array) -> jax.Array: ...
    def discretize(self, x: jax.Array, t: ArrayLike,
                   dt: ArrayLike) -> tuple[jax.Array, jax.Array]: ...
    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> ReverseSDE: ...


class _LinearSDE:
    """Methods shared by the linear SDEs: the marginal, Euler discretisation, reversal."""

    def marginal(self, x0: jax.Array, t: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """Mean `[B, ...]` and std `[B]` of p_0t(x_t | x_0) = N(alpha(t) x_0, sigma(t)^2 I)."""
        alpha, sigma = self.marginal_coeffs(batch_time(t, x0))
        return expand_like(alpha, x0) * x0, sigma

    def discretize(self, x: jax.Array, t: ArrayLike, dt: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """One forward step t - dt -> t as x_t = x_{t-dt} + f_i + G_i z (Song et al. 2021, Appendix
        E) with the Euler-Maruyama choice f_i = f(x, t) dt, G_i = g(t) sqrt(dt); `dt > 0`."""
        drift, diffusion = self.sde(x, t)
        dt = jnp.asarray(dt, x.dtype)
        return drift * dt, diffusion * jnp.sqrt(dt)

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> ReverseSDE:
        """The reverse-time SDE (eq. 6), or the probability flow ODE (eq. 13) if
        `probability_flow`, driven by `score_fn(x [B, ...], t [B]) -> [B, ...]`."""
        return ReverseSDE(self, score_fn, probability_flow)


def _vp_log_mean_coeff(beta_min: float, beta_max: float, t: jax.Array) -> jax.Array:
    """log alpha(t) = -1/2 int_0^t beta(s) ds = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2."""
    return -0.25 * t**2 * (beta_max - beta_min) - 0.5 * t * beta_min


def _check_beta(name: str, beta_min: float, beta_max: float, T: float) -> None:
    if not (0.0 < beta_min <= beta_max) or T <= 0.0:
        raise ValueError(f"{name} needs 0 < beta_min <= beta_max and T > 0, got "
                         f"beta_min={beta_min}, beta_max={beta_max}, T={T}")


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class VPSDE(_LinearSDE):
    """Variance preserving SDE, dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw (Section 3.4): the
    continuous limit of DDPM. Prior N(0, I)."""

    beta_min: float = 0.1
    beta_max: float = 20.0
    T: float = 1.0

    def __post_init__(self):
        _check_beta("VPSDE", self.beta_min, self.beta_max, self.T)

    def beta(self, t: ArrayLike) -> jax.Array:
        """beta(t) = beta_min + t (beta_max - beta_min)."""
        return self.beta_min + jnp.asarray(t) * (self.beta_max - self.beta_min)

    def sde(self, x: jax.Array, t: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """Drift f(x, t) = -1/2 beta(t) x `[B, ...]` and diffusion g(t) = sqrt(beta(t)) `[B]`."""
        beta = self.beta(batch_time(t, x))
        return -0.5 * expand_like(beta, x) * x, jnp.sqrt(beta)

    def marginal_coeffs(self, t: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """alpha(t) = exp(-1/2 int_0^t beta), sigma(t) = sqrt(1 - alpha(t)^2)."""
        log_alpha = _vp_log_mean_coeff(self.beta_min, self.beta_max, jnp.asarray(t))
        return jnp.exp(log_alpha), jnp.sqrt(-jnp.expm1(2.0 * log_alpha))

    def prior_sample(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """x_T ~ N(0, I)."""
        return jax.random.normal(key, shape)

    def prior_logp(self, z: jax.Array) -> jax.Array:
        """log N(z; 0, I), `[B]`."""
        return _gaussian_logp(z, 1.0)

    def discretize(self, x: jax.Array, t: ArrayLike, dt: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """DDPM step t - dt -> t, x_t = sqrt(1 - beta_i) x_{t-dt} + sqrt(beta_i) z (Ho et al.
        2020): f_i = (sqrt(1 - beta_i) - 1) x, G_i = sqrt(beta_i), with the DDPM beta of the step
        beta_i = 1 - (alpha(t) / alpha(t - dt))^2 = beta(t) dt + O(dt^2). (score_sde uses
        beta(t) dt itself, which exceeds 1 for steps longer than 1 / beta_max.)"""
        t = batch_time(t, x)
        log_ratio = _vp_log_mean_coeff(self.beta_min, self.beta_max, t) - _vp_log_mean_coeff(
            self.beta_min, self.beta_max, jnp.maximum(t - dt, 0.0))  # log alpha(t)/alpha(t-dt)
        beta_i = -jnp.expm1(2.0 * log_ratio)
        return (expand_like(jnp.exp(log_ratio), x) - 1.0) * x, jnp.sqrt(beta_i)


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class SubVPSDE(_LinearSDE):
    """sub-VP SDE, dx = -1/2 beta(t) x dt + sqrt(beta(t) (1 - exp(-2 int_0^t beta))) dw
    (Section 3.4): variance (1 - alpha^2)^2, below the VP's at every t. Prior N(0, I)."""

    beta_min: float = 0.1
    beta_max: float = 20.0
    T: float = 1.0

    def __post_init__(self):
        _check_beta("SubVPSDE", self.beta_min, self.beta_max, self.T)

    def beta(self, t: ArrayLike) -> jax.Array:
        """beta(t) = beta_min + t (beta_max - beta_min)."""
        return self.beta_min + jnp.asarray(t) * (self.beta_max - self.beta_min)

    def sde(self, x: jax.Array, t: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """f(x, t) = -1/2 beta(t) x, g(t) = sqrt(beta(t) (1 - alpha(t)^4))."""
        t = batch_time(t, x)
        beta = self.beta(t)
        discount = -jnp.expm1(4.0 * _vp_log_mean_coeff(self.beta_min, self.beta_max, t))
        return -0.5 * expand_like(beta, x) * x, jnp.sqrt(beta * discount)

    def marginal_coeffs(self, t: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """alpha(t) as in the VP SDE, sigma(t) = 1 - alpha(t)^2 (a std, not a variance)."""
        log_alpha = _vp_log_mean_coeff(self.beta_min, self.beta_max, jnp.asarray(t))
        return jnp.exp(log_alpha), -jnp.expm1(2.0 * log_alpha)

    def prior_sample(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """x_T ~ N(0, I)."""
        return jax.random.normal(key, shape)

    def prior_logp(self, z: jax.Array) -> jax.Array:
        """log N(z; 0, I), `[B]`."""
        return _gaussian_logp(z, 1.0)


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class VESDE(_LinearSDE):
    """Variance exploding SDE, dx = sqrt(d sigma^2(t) / dt) dw (Section 3.4): the continuous
    limit of NCSN's noise levels. Prior N(0, sigma_max^2 I)."""

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    T: float = 1.0

    def __post_init__(self):
        if not (0.0 < self.sigma_min < self.sigma_max) or self.T <= 0.0:
            raise ValueError(f"VESDE needs 0 < sigma_min < sigma_max and T > 0, got "
                             f"sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, T={self.T}")

    def sigma(self, t: ArrayLike) -> jax.Array:
        """sigma(t) = sigma_min (sigma_max / sigma_min)^t."""
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** jnp.asarray(t)

    def sde(self, x: jax.Array, t: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """f = 0, g(t) = sigma(t) sqrt(2 log(sigma_max / sigma_min))."""
        sigma = self.sigma(batch_time(t, x))
        return jnp.zeros_like(x), sigma * math.sqrt(2.0 * math.log(self.sigma_max / self.sigma_min))

    def marginal_coeffs(self, t: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """alpha = 1, sigma(t) = sigma_min (sigma_max / sigma_min)^t."""
        sigma = self.sigma(t)
        return jnp.ones_like(sigma), sigma

    def prior_sample(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """x_T ~ N(0, sigma_max^2 I)."""
        return self.sigma_max * jax.random.normal(key, shape)

    def prior_logp(self, z: jax.Array) -> jax.Array:
        """log N(z; 0, sigma_max^2 I), `[B]`."""
        return _gaussian_logp(z, self.sigma_max)

    def discretize(self, x: jax.Array, t: ArrayLike, dt: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """NCSN step t - dt -> t (Song & Ermon 2019), x_t = x_{t-dt} + G_i z:
        f_i = 0, G_i = sqrt(sigma(t)^2 - sigma(t - dt)^2)."""
        t = batch_time(t, x)
        g2 = jnp.square(self.sigma(t)) - jnp.square(self.sigma(jnp.maximum(t - dt, 0.0)))
        return jnp.zeros_like(x), jnp.sqrt(g2)


@dataclasses.dataclass(frozen=True)
class ReverseSDE:
    """Reverse of `forward` in time, driven by `score_fn` (eq. 6); with `probability_flow` the
    deterministic ODE of eq. (13). Read backwards: a solver steps from t to t - dt."""

    forward: SDE
    score_fn: ScoreFn
    probability_flow: bool = False

    @property
    def T(self) -> float:
        return self.forward.T

    def sde(self, x: jax.Array, t: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """Drift f - g^2 score (f - 1/2 g^2 score for the ODE) `[B, ...]`, diffusion g (0) `[B]`."""
        t = batch_time(t, x)
        drift, diffusion = self.forward.sde(x, t)
        weight = 0.5 if self.probability_flow else 1.0
        drift = drift - weight * expand_like(jnp.square(diffusion), x) * self.score_fn(x, t)
        return drift, (jnp.zeros_like(diffusion) if self.probability_flow else diffusion)

    def discretize(self, x: jax.Array, t: ArrayLike, dt: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """Reverse-diffusion step t -> t - dt as x_{t-dt} = x_t - f_i + G_i z (Appendix E, the
        forward discretisation run backwards): f_i = f_i^fwd - G_i^2 score (1/2 G_i^2 for the
        ODE), G_i = G_i^fwd (0 for the ODE)."""
        t = batch_time(t, x)
        f, G = self.forward.discretize(x, t, dt)
        weight = 0.5 if self.probability_flow else 1.0
        f = f - weight * expand_like(jnp.square(G), x) * self.score_fn(x, t)
        return f, (jnp.zeros_like(G) if self.probability_flow else G)


SDES = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}
