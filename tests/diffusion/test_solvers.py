"""SDE and ODE samplers driven by the exact score of Gaussian data N(MU, SIGMA) (d = 3).

x_t ~ N(alpha_t MU, C_t), C_t = alpha_t^2 SIGMA + sigma_t^2 I, so the score is analytic and every
sampler must return N(MU, SIGMA). The probability flow ODE is linear and has a closed-form flow:
in the eigenbasis of SIGMA (eigenvalues lam_k),
x_s = alpha_s MU + sqrt(v_s / v_t) (x_t - alpha_t MU) with v = alpha^2 lam_k + sigma^2, which the
ODE solvers must reproduce sample by sample.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.diffusion import solvers
from gmzoo.diffusion.sde import SDES, VESDE, VPSDE

from gaussian_data import MU, SIGMA, moments

pytestmark = pytest.mark.optimized  # real compute: full XLA optimisation (tests/conftest.py)

N = 10_000
EPS = 1e-3
# 4 standard errors of a 10 000-sample mean (sd <= 0.51: 0.02) and of a covariance entry
# (se <= 0.0037: 0.015) plus 0.005 for the discretisation bias at these step counts (measured
# <= 0.005 with 100 000 samples). Observed errors: mean <= 0.008, covariance <= 0.009.
MEAN_TOL, COV_TOL = 0.02, 0.02


def gaussian_score(sde, mu, cov):
    """score_fn(x [B, d], t [B]) of N(alpha_t mu, alpha_t^2 cov + sigma_t^2 I), by eigh (fast)."""
    lam, u = jnp.linalg.eigh(cov)

    def score_fn(x, t):
        alpha, sigma = sde.marginal_coeffs(t)
        var = jnp.square(alpha)[:, None] * lam + jnp.square(sigma)[:, None]  # [B, d]
        return -(((x - alpha[:, None] * mu) @ u) / var) @ u.T

    return score_fn


def exact_flow(sde, x, t_from, t_to, mu=MU, cov=SIGMA):
    """The probability flow ODE's solution map from t_from to t_to, in float64 numpy."""
    lam, u = np.linalg.eigh(np.asarray(cov, np.float64))
    (a0, s0), (a1, s1) = [[float(v) for v in sde.marginal_coeffs(t)] for t in (t_from, t_to)]
    scale = np.sqrt((a1**2 * lam + s1**2) / (a0**2 * lam + s0**2))
    return a1 * mu + (((np.asarray(x, np.float64) - a0 * mu) @ u) * scale) @ u.T


# Steps of the stochastic samplers; steps of the ODE methods and their per-sample tolerance on the
# flow map, in units of the prior's std (1, or 50 for VE): at least twice the largest error
# measured on 10 000 samples (VP: euler 1.8e-3, heun 1.2e-3, rk4 5.4e-5).
SDE_SAMPLERS = {"euler_maruyama": 500, "reverse_diffusion": 500, "pc": 250}
ODE_METHODS = {"euler": (1000, 5e-3), "heun": (100, 2.5e-3), "rk4": (30, 1.2e-4)}
PRIOR_STD = {"vp": 1.0, "subvp": 1.0, "ve": 50.0}


@functools.partial(jax.jit, static_argnames=("sde", "kind"))
def _samples(sde, kind, key, mu, cov):
    """x_T [N, 3] from the prior and {sampler: x_0 [N, 3]} for every SDE sampler (kind "sde") or
    ODE method (kind "ode"), all from the same x_T; one compilation per (sde, kind)."""
    key_prior, key_sampler = jax.random.split(key)
    x_T = sde.prior_sample(key_prior, (N, 3))
    score_fn = gaussian_score(sde, mu, cov)
    if kind == "ode":
        return x_T, {m: solvers.ode_sample(score_fn, None, x_T, sde, solvers.time_grid(sde, n, EPS),
                                           method=m)
                     for m, (n, _) in ODE_METHODS.items()}
    run = {"euler_maruyama": solvers.euler_maruyama, "reverse_diffusion": solvers.reverse_diffusion,
           "pc": solvers.pc_sampler}
    return x_T, {name: run[name](score_fn, key_sampler, x_T, sde, solvers.time_grid(sde, n, EPS))
                 for name, n in SDE_SAMPLERS.items()}


def _moment_errors(x):
    m, c = moments(x)
    return np.abs(m - MU).max(), np.abs(c - SIGMA).max()


def test_fast_score_is_the_exact_score():
    """gaussian_score (eigh) against a float64 solve of C_t^{-1} (x - alpha MU)."""
    sde = VPSDE()
    x = np.random.default_rng(0).normal(size=(16, 3))
    t = np.linspace(1e-3, 1.0, 16)
    alpha, sigma = [np.asarray(v, np.float64) for v in sde.marginal_coeffs(jnp.asarray(t))]
    cov = alpha[:, None, None] ** 2 * SIGMA + sigma[:, None, None] ** 2 * np.eye(3)
    want = -np.linalg.solve(cov, (x - alpha[:, None] * MU)[..., None])[..., 0]
    got = jax.jit(gaussian_score(sde, MU, SIGMA))(jnp.asarray(x, jnp.float32), jnp.asarray(t))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_sde_samplers_recover_mean_and_covariance(name):
    """Euler-Maruyama, reverse diffusion, and PC (reverse diffusion + 1 Langevin step, snr 0.16)."""
    _, xs = _samples(SDES[name](), "sde", jax.random.key(1), MU, SIGMA)
    for sampler, x in xs.items():
        x = np.asarray(x)
        assert np.all(np.isfinite(x)), sampler
        mean_err, cov_err = _moment_errors(x)
        assert mean_err < MEAN_TOL and cov_err < COV_TOL, (sampler, mean_err, cov_err)


def test_the_moment_check_detects_a_wrong_score():
    """The same samplers with the score of N(MU, 1.15 SIGMA) or N(MU + 0.06, SIGMA) fail."""
    _, xs = _samples(VPSDE(), "sde", jax.random.key(1), MU, SIGMA * 1.15)
    assert all(_moment_errors(np.asarray(x))[1] > COV_TOL for x in xs.values())
    _, xs = _samples(VPSDE(), "sde", jax.random.key(1), MU + 0.06, SIGMA)
    assert all(_moment_errors(np.asarray(x))[0] > MEAN_TOL for x in xs.values())


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_ode_samplers_follow_the_exact_flow(name):
    sde = SDES[name]()
    x_T, xs = _samples(sde, "ode", jax.random.key(2), MU, SIGMA)
    want = exact_flow(sde, x_T, sde.T, EPS)
    for method, x in xs.items():
        tol = ODE_METHODS[method][1] * PRIOR_STD[name]
        np.testing.assert_allclose(x, want, atol=tol, rtol=0, err_msg=method)
        mean_err, cov_err = _moment_errors(np.asarray(x))
        assert mean_err < MEAN_TOL and cov_err < COV_TOL, (method, mean_err, cov_err)


@pytest.mark.parametrize("method,order,steps", [("euler", 1, (64, 128, 256)),
                                                ("heun", 2, (32, 64, 128)),
                                                ("rk4", 4, (16, 32, 64))])
def test_ode_solver_convergence_order(method, order, steps):
    """log-log regression of the endpoint error against the step size (VE PF-ODE, float64)."""
    with jax.enable_x64(True):
        sde = VESDE()
        x_T = np.asarray(sde.prior_sample(jax.random.key(3), (64, 3)), np.float64)
        ref = exact_flow(sde, x_T, sde.T, EPS)
        score_fn = gaussian_score(sde, jnp.asarray(MU), jnp.asarray(SIGMA))
        errors = []
        for n in steps:
            ts = jnp.asarray(np.linspace(sde.T, EPS, n + 1))
            x = solvers.ode_sample(score_fn, None, jnp.asarray(x_T), sde, ts, method=method)
            assert x.dtype == jnp.float64
            errors.append(np.abs(np.asarray(x) - ref).max())
    slope = np.polyfit(np.log(1.0 / np.array(steps)), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.25, (slope, errors)


def test_odeint_solves_a_pytree_ode_both_directions():
    """dx/dt = -x, dy/dt = t: x(1) = e^-1 x(0), y(1) = y(0) + 1/2 (and back again)."""
    f = lambda s, t: {"x": -s["x"], "y": jnp.ones_like(s["y"]) * t}
    s0 = {"x": jnp.array([1.0, 2.0]), "y": jnp.array(0.5)}
    s1, traj = solvers.odeint(f, s0, jnp.linspace(0.0, 1.0, 21), "rk4", return_trajectory=True)
    np.testing.assert_allclose(s1["x"], np.exp(-1.0) * np.array([1.0, 2.0]), rtol=1e-6)
    np.testing.assert_allclose(s1["y"], 1.0, rtol=1e-6)
    assert traj["x"].shape == (20, 2)
    back = solvers.odeint(f, s1, jnp.linspace(1.0, 0.0, 21), "rk4")
    np.testing.assert_allclose(back["x"], s0["x"], rtol=1e-5)


def test_langevin_corrector_alone_converges_to_the_target():
    """Corrector-only MCMC at t = EPS from N(0, I) (300 steps, snr 0.16) reaches N(MU, SIGMA)."""
    sde = VPSDE()
    score_fn = gaussian_score(sde, MU, SIGMA)

    @jax.jit
    def run(key):
        x = jax.random.normal(key, (N, 3))
        t = jnp.full((N,), EPS)

        def body(x, k):
            return solvers.langevin_corrector_step(score_fn, k, x, t, snr=0.16)[0], None

        return jax.lax.scan(body, x, jax.random.split(key, 300))[0]

    mean_err, cov_err = _moment_errors(np.asarray(run(jax.random.key(4))))
    assert mean_err < MEAN_TOL and cov_err < COV_TOL, (mean_err, cov_err)


def test_last_step_returns_the_noise_free_mean():
    """One VP step 1.0 -> 0.9 (beta(1) = 20): EM gives x - (-beta x / 2 - beta s) dt and reverse
    diffusion x - (r - 1) x + (1 - r^2) s with r = alpha(1) / alpha(0.9), whatever the key; PC
    without corrector steps is its predictor."""
    sde = VPSDE()
    score_fn = gaussian_score(sde, MU, SIGMA)
    x_T = sde.prior_sample(jax.random.key(0), (4, 3))
    ts, s = jnp.array([1.0, 0.9]), score_fn(x_T, jnp.ones(4))
    r = math.exp(-0.25 * 19.9 * (1.0 - 0.81) - 0.05 * 0.1)
    want_em = x_T - (-10.0 * x_T - 20.0 * s) * 0.1
    want_rd = x_T - (r - 1.0) * x_T + (1.0 - r * r) * s

    @jax.jit
    def one_step(key):
        pc = functools.partial(solvers.pc_sampler, score_fn, key, x_T, sde, ts, corrector_steps=0)
        return (solvers.euler_maruyama(score_fn, key, x_T, sde, ts),
                solvers.reverse_diffusion(score_fn, key, x_T, sde, ts),
                pc(predictor="euler_maruyama"), pc(predictor="reverse_diffusion"))

    for key in (jax.random.key(1), jax.random.key(2)):
        for got, want in zip(one_step(key), (want_em, want_rd, want_em, want_rd)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_jit_matches_no_jit_same_key_same_samples_and_trajectory():
    sde = VPSDE()
    score_fn = lambda x, t: -jnp.tanh(x) / (t[:, None] + 0.1)  # any nonlinear score will do
    x_T = sde.prior_sample(jax.random.key(0), (4, 3))
    ts = solvers.time_grid(sde, 3)
    run = lambda k: (solvers.pc_sampler(score_fn, k, x_T, sde, ts, return_trajectory=True),
                     solvers.euler_maruyama(score_fn, k, x_T, sde, ts))
    fast = jax.jit(run)
    (x, traj), x_em = fast(jax.random.key(5))
    with jax.disable_jit():
        slow = run(jax.random.key(5))
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    jax.tree.map(close, ((x, traj), x_em), slow)
    jax.tree.map(np.testing.assert_array_equal, fast(jax.random.key(5)), ((x, traj), x_em))
    (x6, _), x_em6 = fast(jax.random.key(6))
    assert not np.allclose(x, x6) and not np.allclose(x_em, x_em6)
    # The trajectory holds the states after each step (noisy); the result is the last step's mean.
    assert traj.shape == (3, 4, 3) and np.all(np.isfinite(traj))
    assert np.abs(np.asarray(x - traj[-1])).max() > 1e-3
    ode = jax.jit(lambda k, x: solvers.ode_sample(score_fn, k, x, sde, ts, method="heun"))
    np.testing.assert_array_equal(ode(None, x_T), ode(None, x_T))
    np.testing.assert_array_equal(ode(jax.random.key(5), x_T), ode(None, x_T))  # key ignored


def test_time_grid_and_input_validation():
    ts = solvers.time_grid(VPSDE(), 4, eps=0.2)
    np.testing.assert_allclose(ts, [1.0, 0.8, 0.6, 0.4, 0.2], rtol=1e-6)
    with pytest.raises(ValueError, match="num_steps >= 1"):
        solvers.time_grid(VPSDE(), 0)
    with pytest.raises(ValueError, match="0 < eps"):
        solvers.time_grid(VPSDE(), 4, eps=0.0, spacing="logsnr")
    with pytest.raises(ValueError, match="choose one of uniform, logsnr"):
        solvers.time_grid(VPSDE(), 4, spacing="log")
    x = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="choose one of reverse_diffusion, euler_maruyama"):
        solvers.pc_sampler(lambda x, t: x, jax.random.key(0), x, VPSDE(), ts, predictor="ddim")
    with pytest.raises(ValueError, match="choose one of euler, heun, rk4"):
        solvers.ode_sample(lambda x, t: x, None, x, VPSDE(), ts, method="rk45")


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_logsnr_time_grid_is_equally_spaced_in_log_snr(name):
    sde = SDES[name]()
    ts = np.asarray(solvers.time_grid(sde, 50, eps=1e-5, spacing="logsnr"), np.float64)
    assert ts[0] == sde.T and ts[-1] == pytest.approx(1e-5) and np.all(np.diff(ts) < 0)
    alpha, sigma = [np.asarray(v, np.float64) for v in sde.marginal_coeffs(jnp.asarray(ts))]
    steps = np.diff(2.0 * np.log(alpha / sigma))
    np.testing.assert_allclose(steps, steps.mean(), rtol=2e-3)  # observed <= 3e-4
    if name == "ve":  # log SNR = -2 log sigma_t is linear in t: the grid is the uniform one
        np.testing.assert_allclose(ts, solvers.time_grid(sde, 50, eps=1e-5), rtol=1e-4)
    else:  # geometric near t = 0 (sigma_t^2 ~ t or t^2 there), unlike the uniform grid
        assert ts[-2] / ts[-1] < 2.0
