"""VP, sub-VP and VE SDEs against their closed forms and against simulation.

For a linear SDE dx = f(t) x dt + g(t) dw the perturbation kernel N(alpha x_0, sigma^2 I) solves
d alpha / dt = f alpha and d sigma^2 / dt = 2 f sigma^2 + g^2: any wrong sign or factor in the
drift, the diffusion or the marginal breaks one of these identities.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gmzoo.diffusion.sde import SDES, SubVPSDE, VESDE, VPSDE

pytestmark = pytest.mark.optimized  # real compute: full XLA optimisation (tests/conftest.py)

TIMES = jnp.array([0.02, 0.1, 0.3, 0.6, 1.0])


def _coeffs(sde, t):
    """f(t), g(t) of the linear SDE at a scalar t (drift at x = 1)."""
    drift, diffusion = sde.sde(jnp.ones((1, 1)), t)
    return drift[0, 0], diffusion[0]


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_marginal_solves_the_moment_odes(name):
    sde = SDES[name]()
    for t in TIMES:
        f, g = _coeffs(sde, t)
        alpha, sigma = sde.marginal_coeffs(t)
        d_alpha = jax.grad(lambda s: sde.marginal_coeffs(s)[0])(t)
        d_var = jax.grad(lambda s: jnp.square(sde.marginal_coeffs(s)[1]))(t)
        np.testing.assert_allclose(d_alpha, f * alpha, rtol=1e-4, atol=1e-7)
        # atol: float32 cancellation in 2 f sigma^2 + g^2 = beta alpha^2 for the VP at t = 1.
        np.testing.assert_allclose(d_var, 2 * f * sigma**2 + g**2, rtol=1e-4, atol=1e-6 * g**2)


def test_closed_form_values():
    vp, subvp, ve = VPSDE(), SubVPSDE(), VESDE()
    a1 = math.exp(-0.25 * 19.9 - 0.05)  # alpha(1) = exp(-1/2 int_0^1 beta)
    np.testing.assert_allclose(vp.marginal_coeffs(1.0), [a1, math.sqrt(1 - a1**2)], rtol=1e-5)
    np.testing.assert_allclose(subvp.marginal_coeffs(1.0), [a1, 1 - a1**2], rtol=1e-5)
    np.testing.assert_allclose(vp.marginal_coeffs(0.0), [1.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(ve.marginal_coeffs(0.0), [1.0, 0.01], rtol=1e-6)
    np.testing.assert_allclose(ve.marginal_coeffs(1.0), [1.0, 50.0], rtol=1e-5)
    np.testing.assert_allclose(_coeffs(vp, 0.5), [-0.5 * 10.05, math.sqrt(10.05)], rtol=1e-6)
    g_ve = 0.01 * 5000**0.5 * math.sqrt(2 * math.log(5000))
    np.testing.assert_allclose(_coeffs(ve, 0.5)[1], g_ve, rtol=1e-5)
    # sub-VP: g^2 = beta (1 - alpha^4) and a variance below the VP's at every t.
    alpha, _ = vp.marginal_coeffs(0.5)
    np.testing.assert_allclose(_coeffs(subvp, 0.5)[1] ** 2, 10.05 * (1 - alpha**4), rtol=1e-5)
    assert np.all(subvp.marginal_coeffs(TIMES)[1] < vp.marginal_coeffs(TIMES)[1])


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_marginal_matches_a_simulated_forward_sde(name):
    """Euler-Maruyama on the forward SDE from x_0 (500 steps to t = 0.5, 20 000 paths)."""
    sde, x0, t1, steps, n = SDES[name](), jnp.array([1.0, -2.0, 0.5]), 0.5, 500, 20_000
    dt = t1 / steps

    @jax.jit
    def simulate(key):
        def body(x, inp):
            t, k = inp
            drift, diffusion = sde.sde(x, t)
            noise = jax.random.normal(k, x.shape)
            return x + drift * dt + diffusion[:, None] * math.sqrt(dt) * noise, None

        inputs = (jnp.arange(steps) * dt, jax.random.split(key, steps))
        return jax.lax.scan(body, jnp.broadcast_to(x0, (n, 3)), inputs)[0]

    x = np.asarray(simulate(jax.random.key(0)), np.float64)
    mean, std = sde.marginal(x0[None], t1)
    std = float(std[0])
    # 4 standard errors of the mean; 6% on the variance (4 se = 4%, plus O(dt) bias).
    np.testing.assert_allclose(x.mean(0), mean[0], atol=4 * std / math.sqrt(n))
    cov = np.cov(x, rowvar=False)
    np.testing.assert_allclose(np.diag(cov), std**2, rtol=0.06)
    np.testing.assert_allclose(cov[~np.eye(3, dtype=bool)], 0.0, atol=4 * std**2 / math.sqrt(n))


@pytest.mark.parametrize("name,steps,rtol",
                         [("vp", 10, 1e-5), ("ve", 10, 1e-5), ("subvp", 1000, 1e-2)])
def test_discretized_chain_reaches_the_marginal(name, steps, rtol):
    """Exact moments of x_{k+1} = x_k + f_k + G_k z over [0, 0.7]: mean m' = m + f_k(m) (f is
    linear), variance v' = (1 + c_k)^2 v + G_k^2 (c_k = f_k(1)). The VP (DDPM betas) and VE
    (NCSN) chains are exact for any step; the sub-VP uses Euler steps (first order)."""
    sde, x0, t1 = SDES[name](), jnp.array([[1.5, -0.5]]), 0.7
    dt = t1 / steps
    mean, var = x0, 0.0
    for k in range(1, steps + 1):
        f, G = sde.discretize(mean, k * dt, dt)
        c = float(sde.discretize(jnp.ones((1, 1)), k * dt, dt)[0][0, 0])
        mean, var = mean + f, (1 + c) ** 2 * var + float(G[0]) ** 2
    want_mean, want_std = sde.marginal(x0, t1)
    # The VE chain starts at x_0 exactly: its variance is sigma(t)^2 - sigma_min^2.
    want_var = float(want_std[0]) ** 2 - (0.01**2 if name == "ve" else 0.0)
    np.testing.assert_allclose(mean, want_mean, rtol=rtol)
    np.testing.assert_allclose(var, want_var, rtol=rtol)


def test_discretize_closed_forms():
    x = jnp.array([[1.0, -2.0]])
    t, dt = 0.6, 0.01
    vp, ve = VPSDE(), VESDE()
    f, G = vp.discretize(x, t, dt)
    # beta_i = 1 - (alpha(t) / alpha(t - dt))^2
    beta_i = 1 - math.exp(-(0.1 * dt + 0.5 * 19.9 * (t**2 - (t - dt) ** 2)))
    np.testing.assert_allclose(G, [math.sqrt(beta_i)], rtol=1e-5)
    np.testing.assert_allclose(f, (math.sqrt(1 - beta_i) - 1) * x, rtol=1e-4)
    f, G = ve.discretize(x, t, dt)
    g2 = 0.01**2 * (5000 ** (2 * t) - 5000 ** (2 * (t - dt)))
    np.testing.assert_allclose(G ** 2, [g2], rtol=1e-4)
    np.testing.assert_array_equal(f, 0.0)
    f, G = SubVPSDE().discretize(x, t, dt)  # Euler: f dt, g sqrt(dt)
    drift, diffusion = SubVPSDE().sde(x, t)
    np.testing.assert_allclose(f, drift * dt, rtol=1e-6)
    np.testing.assert_allclose(G, diffusion * math.sqrt(dt), rtol=1e-6)
    small = float(vp.discretize(x, t, 1e-3)[1][0]) ** 2
    np.testing.assert_allclose(small, vp.beta(t) * 1e-3, rtol=0.01)  # score_sde's beta(t) dt
    # A long VP step stays a valid DDPM step (score_sde's beta(t) dt would exceed 1 here).
    assert 0.0 < float(vp.discretize(x, 1.0, 0.2)[1][0]) < 1.0


def test_reverse_sde_and_probability_flow():
    """VP at t = 0.4: beta = 8.06; reverse drift f - g^2 s, ODE drift f - g^2 s / 2."""
    x = jnp.array([[1.0, -2.0], [0.5, 0.0]])
    s = jnp.array([[0.3, 0.1], [-1.0, 2.0]])
    score_fn = lambda x_, t_: s
    vp, beta = VPSDE(), 0.1 + 19.9 * 0.4
    drift, diffusion = vp.reverse(score_fn).sde(x, 0.4)
    np.testing.assert_allclose(drift, -0.5 * beta * x - beta * s, rtol=1e-5)
    np.testing.assert_allclose(diffusion, [math.sqrt(beta)] * 2, rtol=1e-6)
    drift, diffusion = vp.reverse(score_fn, probability_flow=True).sde(x, 0.4)
    np.testing.assert_allclose(drift, -0.5 * beta * x - 0.5 * beta * s, rtol=1e-5)
    np.testing.assert_array_equal(diffusion, 0.0)
    ve, dt = VESDE(), 0.05
    g2 = 0.01**2 * (5000 ** 0.8 - 5000 ** 0.7)
    f, G = ve.reverse(score_fn).discretize(x, 0.4, dt)
    np.testing.assert_allclose(f, -g2 * s, rtol=1e-4)
    np.testing.assert_allclose(G ** 2, [g2] * 2, rtol=1e-4)
    f, G = ve.reverse(score_fn, probability_flow=True).discretize(x, 0.4, dt)
    np.testing.assert_allclose(f, -0.5 * g2 * s, rtol=1e-4)
    np.testing.assert_array_equal(G, 0.0)


@pytest.mark.parametrize("name,std", [("vp", 1.0), ("subvp", 1.0), ("ve", 50.0)])
def test_prior_sample_and_log_density(name, std):
    sde = SDES[name]()
    z = sde.prior_sample(jax.random.key(0), (4000, 2, 2, 1))
    assert z.shape == (4000, 2, 2, 1)
    np.testing.assert_allclose(np.std(np.asarray(z)), std, rtol=0.03)  # 16 000 draws: se 0.6%
    logp = sde.prior_logp(z[:5])
    prior = stats.multivariate_normal(np.zeros(4), std**2 * np.eye(4))
    want = prior.logpdf(np.asarray(z[:5]).reshape(5, 4))
    assert logp.shape == (5,)
    np.testing.assert_allclose(logp, want, rtol=1e-5)


def test_sdes_are_static_pytrees_and_validate():
    assert set(SDES) == {"vp", "subvp", "ve"}
    assert jax.tree.leaves(VPSDE()) == [] and VPSDE() == VPSDE() and hash(VESDE()) == hash(VESDE())
    marginal_mean = jax.jit(lambda sde, x: sde.marginal(x, 0.3)[0])
    x = jnp.ones((2, 3))
    np.testing.assert_allclose(marginal_mean(VPSDE(), x), VPSDE().marginal(x, 0.3)[0], rtol=1e-6)
    np.testing.assert_allclose(marginal_mean(VPSDE(beta_max=5.0), x),
                               VPSDE(beta_max=5.0).marginal(x, 0.3)[0], rtol=1e-6)
    with pytest.raises(ValueError, match="0 < sigma_min < sigma_max"):
        VESDE(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="beta_min <= beta_max"):
        SubVPSDE(beta_min=30.0)
