"""Langevin samplers of an energy ``E(x)``, each one ``lax.scan``, named for what they sample.

Two conventions are in use, and they sample different distributions:

- :func:`ula`, the unadjusted Langevin algorithm (Roberts & Tweedie 1996; Welling & Teh 2011):

      x <- x - (eps / 2) grad E(x) + sqrt(eps) xi,        xi ~ N(0, I).             (1)

  It is the Euler-Maruyama step of the Langevin diffusion dx = -grad E dt + sqrt(2) dW with
  dt = eps / 2, whose stationary law is p(x) ~ exp(-E(x)); the chain samples it up to an O(eps)
  bias. On E(x) = x^T A x / 2 its stationary covariance is exactly
  A^{-1} (I - eps A / 4)^{-1} (:func:`ula_stationary_covariance`).

- :func:`tempered_langevin`, the decoupled step that IGEBM-style code uses (Du & Mordatch
  2019; Nijkamp et al. 2019), a gradient step ``a`` and a noise scale ``s`` set apart:

      x <- x - a grad E(x) + s xi.                                                 (2)

  Written as (1) for the tempered energy E / T, x - (eps / 2) grad (E / T) + sqrt(eps) xi,
  matching the coefficients gives eps = s^2 and eps / (2 T) = a, so (2) is ULA with step
  s^2 on exp(-E(x) / T) with the effective temperature

      T = s^2 / (2 a)                                             (:func:`effective_temperature`).

  It samples exp(-E / T) up to an O(a) bias (here the bias is set by the gradient step, not by
  s^2: on a quadratic the stationary covariance is exactly T (A (I - a A / 2))^{-1}, see
  :func:`tempered_stationary_covariance`). IGEBM's a = 10, s = 0.005 give T = 1.25e-6: a chain
  that is almost gradient descent and lands near local minima of E, far colder than exp(-E).
  ``a = eps / 2, s = sqrt(eps)`` is ULA (1) exactly (T = 1).
  (IGEBM adds the noise before the gradient step; that chain, read after its gradient step, is
  this one without its last noise draw: the same stationary law up to one noise draw.)

Both take ``energy_fn(x [B, ...]) -> [B]`` (per-example energies; examples independent, so the
gradient of the sum is each example's gradient), a typed key, the starts ``x0 [B, ...]`` and
Python-number settings; the steps are the scan's inputs (one split key per step), and no
gradient flows back through the chain to the starts or to the energy's parameters (the chain is
data for the objective that consumes it: stop the gradient there too, as
:func:`gmzoo.families.ebm.loss.contrastive_divergence` does). Options IGEBM-style code adds,
both off by default and both breaking the stationary-law statements above: ``grad_clip`` clips
each entry of grad E to [-c, c] (IGEBM and its PyTorch ports: 0.01-0.03) and ``bounds = (lo,
hi)`` clips x after every step (images: the data range, e.g. (-1, 1)).
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

EnergyFn = Callable[[jax.Array], jax.Array]

# The sample.variant names, each for what it samples (the family's config takes them).
VARIANTS = ("ula", "tempered")


def _number(name: str, value: float, *, minimum: float, strict: bool) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r}: must be a finite Python number")
    if (value <= minimum) if strict else (value < minimum):
        raise ValueError(f"{name}={value} must be {'>' if strict else '>='} {minimum}")


def check_settings(*, step_size: float, num_steps: int, noise_scale: float = 1.0,
                   grad_clip: float | None = None,
                   bounds: tuple[float, float] | None = None) -> None:
    """Refuses Langevin settings no chain can use, in one line (ValueError), before any compute:
    a step size of zero or less, fewer than one step, a negative noise scale, a clip of zero or
    less, empty bounds."""
    _number("step_size", step_size, minimum=0.0, strict=True)
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(f"num_steps={num_steps!r} must be an integer >= 1")
    _number("noise_scale", noise_scale, minimum=0.0, strict=False)
    if grad_clip is not None:
        _number("grad_clip", grad_clip, minimum=0.0, strict=True)
    if bounds is not None:
        lo, hi = bounds
        _number("bounds[0]", lo, minimum=-math.inf, strict=True)
        _number("bounds[1]", hi, minimum=-math.inf, strict=True)
        if not lo < hi:
            raise ValueError(f"bounds={tuple(bounds)} must be (low, high) with low < high")


def energy_grad(energy_fn: EnergyFn, x: jax.Array) -> jax.Array:
    """grad_x E(x) of every example ``[B, ...]`` (the gradient of the batch sum of ``[B]``)."""
    return jax.grad(lambda y: jnp.sum(energy_fn(y)))(x)


def langevin_step(energy_fn: EnergyFn, x: jax.Array, key: jax.Array, *, step: float,
                  noise_scale: float, grad_clip: float | None = None,
                  bounds: tuple[float, float] | None = None) -> jax.Array:
    """One step x - step * clip(grad E(x)) + noise_scale * xi, then x clipped to ``bounds``:
    (2) above, and (1) with step = eps / 2 and noise_scale = sqrt(eps)."""
    g = energy_grad(energy_fn, x)  # [B, ...]
    if grad_clip is not None:
        g = jnp.clip(g, -grad_clip, grad_clip)
    xi = jax.random.normal(key, x.shape, x.dtype)
    x = x - jnp.asarray(step, x.dtype) * g.astype(x.dtype) + jnp.asarray(noise_scale, x.dtype) * xi
    return x if bounds is None else jnp.clip(x, bounds[0], bounds[1])


def _chain(energy_fn: EnergyFn, key: jax.Array, x0: ArrayLike, num_steps: int, *, step: float,
           noise_scale: float, grad_clip: float | None, bounds: tuple[float, float] | None,
           return_trajectory: bool):
    x0 = jax.lax.stop_gradient(jnp.asarray(x0))

    def body(x, k):
        x = langevin_step(energy_fn, x, k, step=step, noise_scale=noise_scale,
                          grad_clip=grad_clip, bounds=bounds)
        return x, (x if return_trajectory else None)

    x, traj = jax.lax.scan(body, x0, jax.random.split(key, num_steps))
    x, traj = jax.lax.stop_gradient((x, traj))
    return (x, traj) if return_trajectory else x


def ula(energy_fn: EnergyFn, key: jax.Array, x0: ArrayLike, *, step_size: float, num_steps: int,
        grad_clip: float | None = None, bounds: tuple[float, float] | None = None,
        return_trajectory: bool = False):
    """Samples exp(-E) (up to O(step_size)): ``num_steps`` unadjusted Langevin steps (1),
    x <- x - (eps / 2) grad E(x) + sqrt(eps) xi with eps = ``step_size``, from ``x0 [B, ...]``.

    Returns x ``[B, ...]`` (and the trajectory ``[num_steps, B, ...]`` with
    ``return_trajectory``). ``grad_clip``, ``bounds``: see the module docstring."""
    check_settings(step_size=step_size, num_steps=num_steps, grad_clip=grad_clip, bounds=bounds)
    return _chain(energy_fn, key, x0, num_steps, step=step_size / 2.0,
                  noise_scale=math.sqrt(step_size), grad_clip=grad_clip, bounds=bounds,
                  return_trajectory=return_trajectory)


def tempered_langevin(energy_fn: EnergyFn, key: jax.Array, x0: ArrayLike, *, step_size: float,
                      noise_scale: float, num_steps: int, grad_clip: float | None = None,
                      bounds: tuple[float, float] | None = None, return_trajectory: bool = False):
    """Samples exp(-E / T) with T = noise_scale^2 / (2 step_size) (up to O(step_size)):
    ``num_steps`` decoupled steps (2), x <- x - a grad E(x) + s xi with a = ``step_size`` and
    s = ``noise_scale`` (IGEBM: a = 10, s = 0.005, so T = 1.25e-6), from ``x0 [B, ...]``.

    Returns x ``[B, ...]`` (and the trajectory ``[num_steps, B, ...]`` with
    ``return_trajectory``). ``grad_clip``, ``bounds``: see the module docstring."""
    check_settings(step_size=step_size, num_steps=num_steps, noise_scale=noise_scale,
                   grad_clip=grad_clip, bounds=bounds)
    return _chain(energy_fn, key, x0, num_steps, step=step_size, noise_scale=noise_scale,
                  grad_clip=grad_clip, bounds=bounds, return_trajectory=return_trajectory)


def effective_temperature(step_size: float, noise_scale: float) -> float:
    """T = s^2 / (2 a) of the decoupled step (2): :func:`tempered_langevin` samples
    exp(-E / T). ULA's setting (a = eps / 2, s = sqrt(eps)) gives T = 1."""
    check_settings(step_size=step_size, num_steps=1, noise_scale=noise_scale)
    return noise_scale ** 2 / (2.0 * step_size)


def ula_stationary_covariance(A: ArrayLike, step_size: float) -> jax.Array:
    """The exact stationary covariance A^{-1} (I - eps A / 4)^{-1} of ULA (1) on
    E(x) = x^T A x / 2 (A symmetric positive definite, eps lambda_max(A) < 4): from
    Sigma = M Sigma M + eps I with M = I - eps A / 2. It is A^{-1} + O(eps)."""
    A = jnp.asarray(A)
    eye = jnp.eye(A.shape[0], dtype=A.dtype)
    return jnp.linalg.inv(A @ (eye - step_size * A / 4.0))


def tempered_stationary_covariance(A: ArrayLike, step_size: float,
                                   noise_scale: float) -> jax.Array:
    """The exact stationary covariance T (A (I - a A / 2))^{-1} of the decoupled step (2) on
    E(x) = x^T A x / 2 (a lambda_max(A) < 2), T = s^2 / (2 a): from
    Sigma = M Sigma M + s^2 I with M = I - a A. It is T A^{-1} + O(a), not A^{-1}."""
    A = jnp.asarray(A)
    eye = jnp.eye(A.shape[0], dtype=A.dtype)
    temperature = effective_temperature(step_size, noise_scale)
    return temperature * jnp.linalg.inv(A @ (eye - step_size * A / 2.0))


SAMPLERS: dict[str, Callable] = {"ula": ula, "tempered": tempered_langevin}
