"""Probability-flow log-likelihoods of Gaussian data N(MU, SIGMA), where everything is analytic.

The PF-ODE with the exact score maps x (at t = eps) to z = x_T by a known affine map, so
`ode_log_likelihood` must return exactly

    log p_eps(x) - log p_T(z) + log prior(z),    p_t = N(alpha_t MU, alpha_t^2 SIGMA + sigma_t^2 I),

(the last two terms differ only by the prior's mismatch at T), and for the VP SDE, whose p_T is
almost the prior, approximately log N(x; MU, SIGMA).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gmzoo.diffusion.likelihood import (bits_per_dim, exact_divergence, hutchinson_divergence,
                                        ode_log_likelihood)
from gmzoo.diffusion.sde import SDES, VPSDE

from gaussian_data import MU, SIGMA, exact_score

pytestmark = pytest.mark.optimized  # real compute: full XLA optimisation (tests/conftest.py)

EPS = 1e-5
X = MU + np.array([[0.0, 0.0, 0.0], [0.5, -0.3, 0.2], [-1.0, 0.4, 0.6], [0.1, 0.9, -0.7]])  # [4, 3]


def _score_fn(sde):
    return lambda x, t: exact_score(x, *sde.marginal_coeffs(t))


def _gaussian_logpdf(sde, x, t, cov=SIGMA):
    alpha, sigma = [float(v) for v in sde.marginal_coeffs(t)]
    cov = alpha**2 * np.asarray(cov, np.float64) + sigma**2 * np.eye(3)
    return stats.multivariate_normal(alpha * MU, cov).logpdf(x)


def _exact_flow(sde, x, t_from, t_to, cov=SIGMA):
    """The PF-ODE solution map in the eigenbasis of cov (see tests/diffusion/test_solvers.py)."""
    lam, u = np.linalg.eigh(np.asarray(cov, np.float64))
    (a0, s0), (a1, s1) = [[float(v) for v in sde.marginal_coeffs(t)] for t in (t_from, t_to)]
    scale = np.sqrt((a1**2 * lam + s1**2) / (a0**2 * lam + s0**2))
    return a1 * MU + (((np.asarray(x, np.float64) - a0 * MU) @ u) * scale) @ u.T


def _closed_form(sde, x, cov=SIGMA):
    """What ode_log_likelihood must return at `x` (float64): (logp [B], z [B, 3])."""
    z = _exact_flow(sde, x, EPS, sde.T, cov)
    logp = (_gaussian_logpdf(sde, x, EPS, cov) - _gaussian_logpdf(sde, z, sde.T, cov)
            + np.asarray(sde.prior_logp(jnp.asarray(z, jnp.float32))))
    return logp, z


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_exact_trace_likelihood_matches_the_closed_form(name):
    sde = SDES[name]()
    run = jax.jit(lambda x: ode_log_likelihood(sde, _score_fn(sde), x, trace="exact", eps=EPS))
    logp, z = run(jnp.asarray(X, jnp.float32))
    want, z_exact = _closed_form(sde, X)
    np.testing.assert_allclose(z, z_exact, rtol=5e-4, atol=1e-5)  # observed rtol <= 7e-5
    np.testing.assert_allclose(logp, want, atol=3e-4, rtol=0)  # observed <= 3e-5 nats
    assert np.ptp(np.asarray(logp)) > 1.0  # the points have clearly different densities


@pytest.mark.parametrize("name", ["vp", "subvp"])
def test_log_snr_grid_resolves_sharp_data(name):
    """Data of std ~0.02 (the scale of one grey level of an 8x8 digit): near t = 0 the VP drift
    and its divergence grow like 1 / t. 100 RK4 steps equally spaced in t overstate log p by
    ~0.5 nats (why score_vp's first digits figure read 1.47 bits/dim); equally spaced in log SNR
    (the default) they are within 2e-3."""
    sde, cov = SDES[name](), SIGMA * 1e-3
    x = MU + np.random.RandomState(0).multivariate_normal(np.zeros(3), cov, 4)
    score_fn = lambda z, t: exact_score(z, *sde.marginal_coeffs(t), cov=cov)
    run = jax.jit(lambda x: [ode_log_likelihood(sde, score_fn, x, trace="exact", eps=EPS, grid=g)[0]
                             for g in ("logsnr", "uniform")])
    logsnr, uniform = run(jnp.asarray(x, jnp.float32))
    want = _closed_form(sde, x, cov)[0]
    np.testing.assert_allclose(logsnr, want, atol=2e-3, rtol=0)  # observed <= 2e-4
    if name == "vp":
        assert np.abs(uniform - want).max() > 0.2  # observed 0.67


def test_vp_likelihood_is_the_data_log_density():
    """With beta_max = 30, alpha(1) = 5e-4 and p_T is the prior to ~1e-3 nats (with the default
    beta_max = 20, alpha(1) MU . z makes a 0.015-nat difference)."""
    sde = VPSDE(beta_max=30.0)
    run = jax.jit(lambda x: ode_log_likelihood(sde, _score_fn(sde), x, trace="exact",
                                               num_steps=50, eps=EPS))
    want = stats.multivariate_normal(MU, SIGMA).logpdf(X)
    np.testing.assert_allclose(run(jnp.asarray(X, jnp.float32))[0], want, atol=4e-3, rtol=0)
    # observed 1.1e-3


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_likelihood_is_unbiased(probe):
    """2 points x 1000 probes: the mean estimate is the closed-form value within 4 standard errors
    (SIGMA is not diagonal, so even Rademacher probes have non-zero variance)."""
    sde, reps = VPSDE(), 1000
    x = jnp.asarray(np.repeat(X[1:3], reps, axis=0), jnp.float32)  # [2000, 3]
    run = jax.jit(lambda x, k: ode_log_likelihood(sde, _score_fn(sde), x, k, probe=probe,
                                                  num_steps=50, eps=EPS))
    est = np.asarray(run(x, jax.random.key(0))[0], np.float64).reshape(2, reps)
    se = est.std(1) / math.sqrt(reps)
    assert np.all(se > 1e-3), se
    np.testing.assert_array_less(np.abs(est.mean(1) - _closed_form(sde, X[1:3])[0]), 4 * se)


def test_euler_and_heun_likelihoods_converge_at_their_order():
    """Errors against the closed form: 4x the steps cut Euler's ~4x, 2x the steps cut Heun's ~4x."""
    sde = VPSDE()
    runs = [("euler", 100), ("euler", 400), ("heun", 50), ("heun", 100)]

    @jax.jit
    def logps(x):
        return [ode_log_likelihood(sde, _score_fn(sde), x, trace="exact", method=m, num_steps=n,
                                   eps=EPS)[0] for m, n in runs]

    want = _closed_form(sde, X)[0]
    got = logps(jnp.asarray(X, jnp.float32))
    errors = {r: float(np.abs(lp - want).max()) for r, lp in zip(runs, got)}
    assert 3.0 < errors["euler", 100] / errors["euler", 400] < 5.0, errors
    assert 3.0 < errors["heun", 50] / errors["heun", 100] < 5.0, errors
    assert errors["heun", 100] < 0.05, errors


def test_divergences_against_the_jacobian_trace():
    """A nonlinear per-example map: exact divergence = trace of jax.jacfwd; Hutchinson's mean over
    4000 Rademacher probes within 4 standard errors of it."""
    w = jax.random.normal(jax.random.key(0), (3, 3))
    fn = lambda x: jnp.tanh(x @ w) * x[:, ::-1]  # [B, 3] -> [B, 3], examples independent
    x = jax.random.normal(jax.random.key(1), (5, 3))
    probes = jax.random.rademacher(jax.random.key(2), (4000, 5, 3), jnp.float32)

    @jax.jit
    def run(x, probes):
        jac = jax.vmap(jax.jacfwd(lambda xi: fn(xi[None])[0]))(x)  # [5, 3, 3]
        hutchinson = jax.vmap(lambda v: hutchinson_divergence(fn, x, v)[1])(probes)  # [4000, 5]
        return exact_divergence(fn, x), jnp.trace(jac, axis1=1, axis2=2), hutchinson

    (out, div), trace, est = run(x, probes)
    np.testing.assert_allclose(out, fn(x), rtol=1e-6)
    np.testing.assert_allclose(div, trace, rtol=1e-5, atol=1e-6)
    est = np.asarray(est, np.float64)
    se = est.std(0) / math.sqrt(4000)
    np.testing.assert_array_less(np.abs(est.mean(0) - np.asarray(div)), 4 * se + 1e-6)


def test_bits_per_dim_jit_and_validation():
    nll = jnp.array([3 * 784 * math.log(2.0)])
    np.testing.assert_allclose(bits_per_dim(nll, 784), [3.0], rtol=1e-6)
    sde = VPSDE()
    x = jnp.asarray(X, jnp.float32)
    score_fn = lambda x, t: -jnp.tanh(x) / (t[:, None] + 0.1)  # any nonlinear score will do
    run = lambda k: ode_log_likelihood(sde, score_fn, x, k, num_steps=3, method="heun")
    logp, z = jax.jit(run)(jax.random.key(3))
    with jax.disable_jit():
        slow, _ = run(jax.random.key(3))
    np.testing.assert_allclose(logp, slow, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(logp, jax.jit(run)(jax.random.key(3))[0])
    assert logp.shape == (4,) and z.shape == (4, 3)
    with pytest.raises(ValueError, match="needs a key"):
        ode_log_likelihood(sde, _score_fn(sde), x)
    with pytest.raises(ValueError, match="choose one of hutchinson, exact"):
        ode_log_likelihood(sde, _score_fn(sde), x, trace="skilling")
    with pytest.raises(ValueError, match="choose one of rademacher, gaussian"):
        ode_log_likelihood(sde, _score_fn(sde), x, jax.random.key(0), probe="sphere")
