"""DDPM forward-process closed forms against Gaussian conditioning and iteration (float64 numpy)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.diffusion import schedules


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_q_xt_given_x0_equals_iterating_one_step_kernels(name):
    s = schedules.make(name, 200)
    betas = np.asarray(s.betas, np.float64)
    mean_coef, var = 1.0, 0.0  # x_t | x_0 = mean_coef * x_0 + N(0, var)
    for t in range(200):
        mean_coef, var = np.sqrt(1 - betas[t]) * mean_coef, (1 - betas[t]) * var + betas[t]
        np.testing.assert_allclose(mean_coef, np.sqrt(s.alphas_cumprod[t]), rtol=1e-5)
        np.testing.assert_allclose(var, 1 - s.alphas_cumprod[t], rtol=1e-4, atol=1e-7)
    assert float(s.alphas_cumprod[-1]) < 1e-3  # x_T is close to N(0, I)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_posterior_equals_conditioning_the_joint(name):
    """(x_{t-1}, x_t) | x_0 is jointly Gaussian; condition on x_t by the Gaussian formulas."""
    s = schedules.make(name, 100)
    betas = np.asarray(s.betas, np.float64)
    abar = np.cumprod(1 - betas)
    rng = np.random.default_rng(0)
    x0, xt = rng.normal(size=(2, 5))
    for t in [1, 2, 10, 50, 99]:
        m1, v1 = np.sqrt(abar[t - 1]) * x0, 1 - abar[t - 1]
        m2, v2 = np.sqrt(abar[t]) * x0, 1 - abar[t]
        c12 = np.sqrt(1 - betas[t]) * v1
        mean = m1 + c12 / v2 * (xt - m2)
        var = v1 - c12 ** 2 / v2
        got_mean, got_var, got_log_var = schedules.q_posterior(
            s, jnp.asarray(x0[None]), jnp.asarray(xt[None]), jnp.array([t]))
        np.testing.assert_allclose(got_mean[0], mean, rtol=2e-4, atol=1e-5)
        np.testing.assert_allclose(got_var[0], var, rtol=2e-4)
        np.testing.assert_allclose(got_log_var[0], np.log(var), rtol=1e-4, atol=1e-5)
    # t = 0: x_{-1} is x_0 itself
    mean0, var0, _ = schedules.q_posterior(s, jnp.asarray(x0[None]), jnp.asarray(xt[None]), jnp.array([0]))
    np.testing.assert_allclose(mean0[0], x0, atol=1e-5)
    assert float(var0[0]) == 0.0


def test_q_sample_statistics():
    s = schedules.linear(100)
    x0 = jnp.full((20000, 1), 0.7)
    t = jnp.full((20000,), 30)
    eps = jax.random.normal(jax.random.key(0), x0.shape)
    x = np.asarray(schedules.q_sample(s, x0, t, eps))
    ab = float(s.alphas_cumprod[30])
    assert abs(x.mean() - np.sqrt(ab) * 0.7) < 0.03
    assert abs(x.var() - (1 - ab)) < 0.03


def test_linear_schedule_matches_ho_et_al_and_bad_betas_refused():
    s = schedules.linear(1000)
    np.testing.assert_allclose(np.asarray(s.betas)[[0, -1]], [1e-4, 0.02], rtol=1e-6)
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        schedules.from_betas([0.1, 1.2])
    with pytest.raises(ValueError, match="choose one of linear, cosine"):
        schedules.make("sigmoid", 10)
