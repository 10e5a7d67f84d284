"""The two Langevin samplers on a quadratic energy E(x) = x^T A x / 2, where each chain's
stationary covariance is known in closed form: ULA recovers A^{-1} (up to O(eps)), the
IGEBM-style decoupled step samples the far colder exp(-E / T) with T = s^2 / (2 a)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.samplers import langevin

# Eigenvalues ~0.048 and ~0.092: stable for the IGEBM step a = 10 (a lambda_max < 2).
A = np.array([[0.08, 0.02], [0.02, 0.06]])
CHAINS = 20_000  # relative standard error of a sample variance: sqrt(2 / 20000) = 1%


def quadratic_energy(x):
    return 0.5 * jnp.einsum("bi,ij,bj->b", x, jnp.asarray(A, x.dtype), x)  # [B]


def covariance(x):
    x = np.asarray(x, np.float64)
    return np.cov(x, rowvar=False)


def starts(key=0, scale=1.0):
    return scale * jax.random.normal(jax.random.key(key), (CHAINS, 2))


def test_ula_recovers_the_covariance_up_to_order_eps():
    """eps = 0.5: ULA's exact stationary covariance A^{-1} (I - eps A / 4)^{-1} is within
    1.2% of A^{-1}; the sample covariance of 20,000 chains after 800 steps (mixing factor
    (1 - eps lambda_min / 2)^1600 ~ 1e-8) matches both within 5% (~3-4 standard errors)."""
    run = jax.jit(lambda k, x: langevin.ula(quadratic_energy, k, x, step_size=0.5, num_steps=800))
    cov = covariance(run(jax.random.key(1), starts()))
    target = np.linalg.inv(A)
    exact = np.asarray(langevin.ula_stationary_covariance(A, 0.5))
    np.testing.assert_allclose(exact, target, rtol=0.015)  # the O(eps) bias is small ...
    assert np.abs(exact - target).max() > 1e-3  # ... and not zero
    scale = np.abs(target).max()
    np.testing.assert_allclose(cov, target, atol=0.05 * scale)
    np.testing.assert_allclose(cov, exact, atol=0.05 * scale)


def test_ula_bias_is_order_eps():
    """The exact stationary covariance's distance to A^{-1} is first order in eps: it halves
    when eps halves, with the leading term eps / 4 per variance (from
    1 / (lambda (1 - eps lambda / 4)) - 1 / lambda), on a stiff quadratic."""
    stiff = np.diag([1.0, 4.0])
    steps = (0.1, 0.05, 0.025, 0.0125)
    errors = [np.abs(np.asarray(langevin.ula_stationary_covariance(stiff, eps)) - np.linalg.inv(stiff)).max()
              for eps in steps]
    np.testing.assert_allclose(np.array(errors[:-1]) / np.array(errors[1:]), 2.0, rtol=0.1)
    assert errors[-1] / steps[-1] == pytest.approx(0.25, rel=0.02)
    # and the chain agrees with the closed form at the largest step (the bias is 25% there)
    x = langevin.ula(lambda y: 0.5 * jnp.sum(y * y * jnp.asarray([1.0, 4.0]), -1),
                     jax.random.key(2), starts(), step_size=0.2, num_steps=300)
    np.testing.assert_allclose(np.diag(covariance(x)),
                               np.diag(np.asarray(langevin.ula_stationary_covariance(stiff, 0.2))),
                               rtol=0.05)


def test_igebm_setting_samples_a_far_colder_law_than_exp_minus_e():
    """a = 10, s = 0.005 (IGEBM): T = 1.25e-6. The chains' covariance is ~1e-6 of A^{-1}
    (they do not sample exp(-E)) and matches the tempered closed form
    T (A (I - a A / 2))^{-1} within 5%."""
    a, s = 10.0, 0.005
    temperature = langevin.effective_temperature(a, s)
    assert temperature == pytest.approx(1.25e-6)
    run = jax.jit(lambda k, x: langevin.tempered_langevin(quadratic_energy, k, x, step_size=a,
                                                          noise_scale=s, num_steps=200))
    cov = covariance(run(jax.random.key(3), starts()))
    target = np.linalg.inv(A)
    ratio = np.linalg.eigvalsh(cov).max() / np.linalg.eigvalsh(target).max()
    assert ratio < 1e-4, ratio  # nowhere near exp(-E)
    exact = np.asarray(langevin.tempered_stationary_covariance(A, a, s))
    np.testing.assert_allclose(cov, exact, atol=0.05 * np.abs(exact).max())
    # the O(a) factor (I - a A / 2)^{-1} matters at this step: T A^{-1} alone is off by > 20%
    assert np.abs(temperature * target - cov).max() > 0.2 * np.abs(exact).max()


def test_tempered_langevin_at_a_small_step_samples_exp_minus_e_over_t():
    """At a small gradient step the decoupled chain samples exp(-E / T) for the T its
    settings predict: here T = 4 (s = 0.4, a = 0.02), covariance 4 A^{-1} within 5%."""
    a, s = 0.02, 0.4
    assert langevin.effective_temperature(a, s) == pytest.approx(4.0)
    x = jax.jit(lambda k, x: langevin.tempered_langevin(
        lambda y: 0.5 * jnp.sum(y * y, -1), k, x, step_size=a, noise_scale=s,
        num_steps=1000))(jax.random.key(4), starts())
    np.testing.assert_allclose(covariance(x), 4.0 * np.eye(2), atol=0.2)


def test_ula_is_the_decoupled_step_at_temperature_one():
    """ula(eps) and tempered_langevin(a = eps / 2, s = sqrt(eps)) are the same chain."""
    x0, key = starts(scale=3.0)[:64], jax.random.key(5)
    a = langevin.ula(quadratic_energy, key, x0, step_size=0.3, num_steps=20)
    b = langevin.tempered_langevin(quadratic_energy, key, x0, step_size=0.15,
                                   noise_scale=math.sqrt(0.3), num_steps=20)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert langevin.effective_temperature(0.15, math.sqrt(0.3)) == pytest.approx(1.0)


def test_a_wrong_step_is_detected():
    """The covariance check can fail: ULA whose drift forgets the 1/2 (x - eps grad E +
    sqrt(eps) xi, i.e. T = 1/2) gives half the variance."""
    x = langevin.tempered_langevin(quadratic_energy, jax.random.key(6), starts(),
                                   step_size=0.5, noise_scale=math.sqrt(0.5), num_steps=800)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(covariance(x), np.linalg.inv(A), atol=0.05 * np.abs(np.linalg.inv(A)).max())


@pytest.mark.parametrize("name", langevin.VARIANTS)
def test_jit_and_no_jit_agree_and_the_chain_is_one_scan(name):
    kw = dict(step_size=0.1, num_steps=2)
    if name == "tempered":
        kw["noise_scale"] = 0.05
    sampler = langevin.SAMPLERS[name]
    x0, key = starts(scale=2.0)[:16], jax.random.key(7)
    fn = lambda k, x: sampler(quadratic_energy, k, x, grad_clip=0.03, bounds=(-1.5, 1.5), **kw)
    jitted = jax.jit(fn)(key, x0)
    with jax.disable_jit():
        eager = fn(key, x0)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(np.asarray(jitted)) <= 1.5)
    # one scan of num_steps iterations, whatever num_steps is (no Python loop over steps)
    for steps in (3, 50):
        jaxpr = jax.make_jaxpr(lambda k, x: sampler(quadratic_energy, k, x,
                                                    **{**kw, "num_steps": steps}))(key, x0)
        scans = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "scan"]
        assert len(scans) == 1 and scans[0].params["length"] == steps
        assert len(jaxpr.jaxpr.eqns) < 20


def test_the_scan_is_the_written_recursion_with_one_key_per_step():
    """Against the update (2) written out by hand (grad E = A x) with the split keys (ULA is
    this chain at a = eps / 2, s = sqrt(eps), tested above); the trajectory's last row is the
    result; another key gives another chain."""
    step, noise = 0.4, 0.2
    sampler = langevin.tempered_langevin
    kw = dict(step_size=step, noise_scale=noise, num_steps=5)
    x0, key = starts(scale=2.0)[:8], jax.random.key(9)
    x, traj = jax.jit(lambda k, x: sampler(quadratic_energy, k, x, return_trajectory=True, **kw))(key, x0)
    ref = np.asarray(x0, np.float64)
    for i, k in enumerate(jax.random.split(key, 5)):
        ref = ref - step * ref @ A + noise * np.asarray(jax.random.normal(k, (8, 2)))
        np.testing.assert_allclose(traj[i], ref, rtol=1e-5, atol=1e-5)
    assert traj.shape == (5, 8, 2)
    np.testing.assert_array_equal(traj[-1], x)
    assert not np.allclose(sampler(quadratic_energy, jax.random.key(8), x0, **kw), x)


def test_clipping_limits_each_gradient_entry():
    """With grad_clip = c and no noise, one step moves each coordinate by at most a * c."""
    x0 = jnp.array([[100.0, -100.0], [0.0, 1e-3]])
    x = langevin.tempered_langevin(lambda y: 0.5 * jnp.sum(y * y, -1), jax.random.key(0), x0,
                                   step_size=2.0, noise_scale=0.0, num_steps=1, grad_clip=0.01)
    np.testing.assert_allclose(x, [[99.98, -99.98], [0.0, 1e-3 - 2e-3]], rtol=1e-6, atol=1e-7)


def test_no_gradient_flows_through_the_chain():
    def f(theta):
        x = langevin.ula(lambda y: theta * jnp.sum(y * y, -1), jax.random.key(0),
                         jnp.ones((4, 2)), step_size=0.1, num_steps=5)
        return jnp.sum(x)
    assert float(jax.grad(f)(1.0)) == 0.0


@pytest.mark.parametrize("kw, words", [
    (dict(step_size=0.0), "step_size=0.0 must be > 0"),
    (dict(step_size=-1e-3), "step_size=-0.001 must be > 0"),
    (dict(step_size=float("nan")), "finite"),
    (dict(num_steps=0), "num_steps=0 must be an integer >= 1"),
    (dict(num_steps=2.5), "num_steps=2.5"),
    (dict(noise_scale=-0.1), "noise_scale=-0.1 must be >= 0"),
    (dict(grad_clip=0.0), "grad_clip=0.0 must be > 0"),
    (dict(bounds=(1.0, -1.0)), "low < high"),
])
def test_bad_settings_are_refused_in_one_line_before_compute(kw, words):
    def boom(x):
        raise AssertionError("the energy was called")
    args = {"step_size": 0.1, "num_steps": 3, **{k: v for k, v in kw.items() if k != "noise_scale"}}
    for sampler, extra in ((langevin.ula, {}), (langevin.tempered_langevin,
                                                 {"noise_scale": kw.get("noise_scale", 0.1)})):
        if "noise_scale" in kw and sampler is langevin.ula:
            continue
        with pytest.raises(ValueError) as e:
            sampler(boom, jax.random.key(0), jnp.zeros((2, 2)), **args, **extra)
        assert words in str(e.value) and "\n" not in str(e.value)
