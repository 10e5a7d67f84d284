"""DDPM and DDIM driven by the exact noise predictor of Gaussian data recover its moments."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.diffusion import samplers, schedules
from gmzoo.diffusion.parameterization import eps_and_x0, target

from gaussian_data import MU, SIGMA, exact_eps, moments

pytestmark = pytest.mark.optimized  # real compute: full XLA optimisation (tests/conftest.py)

N = 4000


def _eps_fn(schedule):
    def eps_fn(x, t):
        alpha, sigma = schedules.coeffs(schedule, t)
        return exact_eps(x, alpha, sigma)
    return eps_fn


def _check_moments(x, mean_tol, cov_tol):
    m, c = moments(x)
    assert np.all(np.isfinite(x))
    np.testing.assert_allclose(m, MU, atol=mean_tol)
    np.testing.assert_allclose(c, SIGMA, atol=cov_tol)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_ddpm_ancestral_recovers_mean_and_covariance(name):
    s = schedules.make(name, 1000)
    x_T = jax.random.normal(jax.random.key(1), (N, 3))
    run = jax.jit(lambda k, x: samplers.ddpm_ancestral(_eps_fn(s), k, x, s))
    x = np.asarray(run(jax.random.key(2), x_T))
    # Sampling error of a 4000-sample mean is ~0.01, of a covariance entry ~0.005.
    _check_moments(x, mean_tol=0.04, cov_tol=0.02)


@pytest.mark.parametrize("eta,steps", [(0.0, 50), (1.0, 100), (0.5, 200)])
def test_ddim_recovers_mean_and_covariance(eta, steps):
    s = schedules.linear(1000)
    x_T = jax.random.normal(jax.random.key(3), (N, 3))
    run = jax.jit(lambda k, x: samplers.ddim(_eps_fn(s), k, x, s, num_steps=steps, eta=eta))
    x = np.asarray(run(jax.random.key(4), x_T))
    _check_moments(x, mean_tol=0.04, cov_tol=0.03)


def test_ddim_error_shrinks_with_steps():
    """Few deterministic steps under-disperse (10 steps: the variances come out ~half); the
    covariance error falls as the step count grows."""
    s = schedules.linear(1000)
    x_T = jax.random.normal(jax.random.key(3), (N, 3))
    errors = []
    for steps in (5, 10, 25, 100):
        x = samplers.ddim(_eps_fn(s), jax.random.key(4), x_T, s, num_steps=steps)
        errors.append(np.abs(moments(x)[1] - SIGMA).max())
    assert errors == sorted(errors, reverse=True), errors
    assert errors[-1] < 0.03 < errors[0], errors


def test_a_wrong_noise_predictor_is_detected():
    """The moment check can fail: a predictor off by 10% gives the wrong covariance."""
    s = schedules.linear(1000)
    x_T = jax.random.normal(jax.random.key(3), (N, 3))
    bad = lambda x, t: 0.9 * _eps_fn(s)(x, t)
    x = np.asarray(jax.jit(lambda k, x: samplers.ddim(bad, k, x, s, num_steps=50))(jax.random.key(4), x_T))
    with pytest.raises(AssertionError):
        _check_moments(x, mean_tol=0.04, cov_tol=0.03)


def test_ddim_eta0_is_deterministic_and_ddpm_depends_on_key_only():
    s = schedules.linear(100)
    x_T = jax.random.normal(jax.random.key(0), (16, 3))
    ddim = jax.jit(lambda k: samplers.ddim(_eps_fn(s), k, x_T, s, num_steps=20))
    np.testing.assert_array_equal(ddim(jax.random.key(1)), ddim(jax.random.key(2)))
    ddpm = jax.jit(lambda k: samplers.ddpm_ancestral(_eps_fn(s), k, x_T, s))
    np.testing.assert_array_equal(ddpm(jax.random.key(1)), ddpm(jax.random.key(1)))
    assert not np.allclose(ddpm(jax.random.key(1)), ddpm(jax.random.key(2)))


def test_jit_and_no_jit_agree():
    s = schedules.linear(20)
    x_T = jax.random.normal(jax.random.key(0), (8, 3))
    f = lambda k: samplers.ddpm_ancestral(_eps_fn(s), k, x_T, s, clip=(-1.0, 1.0))
    g = lambda k: samplers.ddim(_eps_fn(s), k, x_T, s, num_steps=7, eta=0.5)
    for fn in (f, g):
        with jax.disable_jit():
            slow = np.asarray(fn(jax.random.key(5)))
        np.testing.assert_allclose(jax.jit(fn)(jax.random.key(5)), slow, rtol=1e-4, atol=1e-5)


def test_ancestral_mean_is_the_seeds_formula():
    """mu = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t) (no clipping, no noise at t=0)."""
    s = schedules.linear(50)
    x = jax.random.normal(jax.random.key(0), (4, 3))
    eps = jax.random.normal(jax.random.key(1), (4, 3))
    for t in [0, 1, 25, 49]:
        got = samplers.ddpm_step(lambda x, tb: eps, s, x, jnp.int32(t), jax.random.key(2))
        b, ab = float(s.betas[t]), float(s.alphas_cumprod[t])
        want = (x - b / np.sqrt(1 - ab) * eps) / np.sqrt(1 - b)
        if t == 0:
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        else:  # plus sqrt(beta~_t) z: check the mean by removing the same noise
            z = jax.random.normal(jax.random.key(2), x.shape)
            np.testing.assert_allclose(got - np.sqrt(float(s.posterior_variance[t])) * z, want,
                                       rtol=1e-4, atol=1e-5)


def test_ddim_refuses_impossible_step_counts():
    s = schedules.linear(10)
    with pytest.raises(ValueError, match="between 1 and the model's 10"):
        samplers.ddim(_eps_fn(s), jax.random.key(0), jnp.zeros((1, 3)), s, num_steps=11)
    np.testing.assert_array_equal(samplers.ddim_timesteps(10, 4), [9, 6, 3, 0])


@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "score"])
def test_parameterisations_round_trip(prediction):
    k1, k2 = jax.random.split(jax.random.key(0))
    x0 = jax.random.normal(k1, (5, 3))
    eps = jax.random.normal(k2, (5, 3))
    alpha, sigma = jnp.linspace(0.2, 0.9, 5), jnp.linspace(0.95, 0.3, 5)
    x_t = alpha[:, None] * x0 + sigma[:, None] * eps
    out = target(prediction, x0, eps, alpha, sigma)
    e, x = eps_and_x0(prediction, out, x_t, alpha, sigma)
    np.testing.assert_allclose(e, eps, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(x, x0, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("T,tol", [(1000, 2e-3), (100, 2e-2)])
def test_linear_schedule_is_the_vp_sde_discretised(T, tol):
    """The SDE solvers run a DDPM network through VPSDE(0.1, 20) with step i at t = (i+1)/T: the
    marginal coefficients agree to O(1/T)."""
    from gmzoo.diffusion.sde import VPSDE

    s, sde = schedules.linear(T), VPSDE(beta_min=0.1, beta_max=20.0)
    alpha, sigma = sde.marginal_coeffs(jnp.arange(1, T + 1) / T)
    np.testing.assert_allclose(np.sqrt(s.alphas_cumprod), alpha, atol=tol)
    np.testing.assert_allclose(np.sqrt(1 - s.alphas_cumprod), sigma, atol=tol)
    with pytest.raises(AssertionError):  # off by one step is visibly wrong at T = 100
        np.testing.assert_allclose(np.sqrt(schedules.linear(100).alphas_cumprod),
                                   VPSDE().marginal_coeffs(jnp.arange(0, 100) / 100)[0], atol=2e-3)
