"""EM for Gaussian mixtures against its guarantees, closed forms and scikit-learn's
GaussianMixture (gmzoo.families.gmm.em)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from gmzoo.families.gmm import em, kmeans
from gmzoo.train.step import all_finite

TYPES = em.COVARIANCE_TYPES
# Jitted once per shape and type: op-by-op dispatch of the same functions costs seconds.
em_step = jax.jit(em.em_step, static_argnums=(2,))
fit = jax.jit(em.fit, static_argnums=(2, 3))
statistics = jax.jit(em.sufficient_statistics, static_argnums=(2,))
log_prob = jax.jit(em.log_prob, static_argnums=(2,))
from_moments = jax.jit(em.params_from_moments, static_argnums=(3,))
m_step = jax.jit(em.m_step, static_argnums=(1,))


def blobs(n=300, d=3, k=3, seed=0):
    rng = np.random.RandomState(seed)
    centres = rng.randn(k, d) * 4
    return (centres[rng.randint(k, size=n)] + rng.randn(n, d) * rng.uniform(0.5, 1.5, size=(1, d)))


def initial(x, k, covariance_type, seed=1):
    """Weights, means and covariances to start both implementations from (moments of a random
    assignment, so the start is far from the optimum and EM has work to do)."""
    rng = np.random.RandomState(seed)
    z = rng.randint(k, size=len(x))
    w = np.bincount(z, minlength=k) / len(x)
    mu = np.stack([x[z == j].mean(0) for j in range(k)])
    full = np.stack([np.cov(x[z == j].T) + 1e-3 * np.eye(x.shape[1]) for j in range(k)])
    cov = {"full": full, "tied": full.mean(0), "diag": np.stack([np.diag(c) for c in full]),
           "spherical": np.array([np.diag(c).mean() for c in full])}[covariance_type]
    return w, mu, cov


def dense(cov, covariance_type, k):
    """[K, D, D] covariance matrices of any covariance type."""
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return np.stack([cov] * k)
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    d = 3 if k == 3 else 2
    return np.stack([c * np.eye(d) for c in cov])


def precisions(cov, covariance_type):
    return np.linalg.inv(cov) if covariance_type in ("full", "tied") else 1.0 / cov


@pytest.mark.parametrize("covariance_type", TYPES)
def test_matches_scikit_learn_in_float64(covariance_type):
    """From the same weights, means and covariances, every iteration equals scikit-learn's.

    Alignment: ``GaussianMixture.fit`` with ``weights_init``/``means_init``/``precisions_init``
    takes those as the parameters (no M-step first), then ``max_iter`` times: E-step on the
    current parameters, M-step. Its ``lower_bounds_[i]`` is the mean log-likelihood of the
    parameters *before* the i-th M-step, which is what our ``em.fit`` returns at i; after
    ``max_iter=n`` both hold the parameters of n M-steps (``tol=0`` never stops early).
    """
    x, k, steps = blobs(), 3, 8
    w, mu, cov = initial(x, k, covariance_type)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = GaussianMixture(k, covariance_type=covariance_type, max_iter=steps, tol=0.0,
                              weights_init=w, means_init=mu, reg_covar=1e-6,
                              precisions_init=precisions(cov, covariance_type)).fit(x)
    with jax.enable_x64(True):
        params = em.params_from_moments(w, mu, cov, covariance_type)
        params, lls = fit(params, jnp.asarray(x), covariance_type, steps)
        final_ll = float(jnp.mean(em.log_prob(params, jnp.asarray(x), covariance_type)))
        covariances = em.covariances_from_precisions_cholesky(params["precisions_cholesky"],
                                                              covariance_type)
        assert params["means"].dtype == jnp.float64
    want = ref.score(x)  # mean log-likelihood of the fitted model
    assert abs(final_ll - want) <= 1e-4 * abs(want), (final_ll, want)
    np.testing.assert_allclose(np.asarray(lls), ref.lower_bounds_, rtol=1e-10)
    assert ref.lower_bounds_[-1] > ref.lower_bounds_[0] + 1e-5  # EM moved: not a trivial match
    np.testing.assert_allclose(np.asarray(params["weights"]), ref.weights_, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(np.asarray(params["means"]), ref.means_, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(covariances), ref.covariances_, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(params["precisions_cholesky"]),
                               ref.precisions_cholesky_, rtol=1e-6)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_log_likelihood_never_decreases(covariance_type):
    x = jnp.asarray(blobs(seed=3), jnp.float32)
    params = kmeans.init_params(jax.random.key(0), x, 4, covariance_type)
    _, lls = fit(params, x, covariance_type, 25)
    lls = np.asarray(lls)
    assert np.all(np.isfinite(lls))
    assert np.all(np.diff(lls) >= -1e-4 * np.abs(lls[1:])), lls  # float32 rounding only
    assert lls[-1] > lls[0] + 1e-3  # and it did climb


def test_log_prob_is_a_density_by_quadrature():
    """A 2-D mixture integrates to 1 on a fine grid (the Cholesky-precision log-density)."""
    w, mu = np.array([0.3, 0.7]), np.array([[-1.0, 0.0], [1.5, 0.5]])
    cov = np.array([[[0.5, 0.2], [0.2, 0.4]], [[0.3, -0.1], [-0.1, 0.6]]])
    params = em.params_from_moments(w, mu, cov, "full")
    g = np.linspace(-6, 6, 401)
    xx, yy = np.meshgrid(g, g)
    pts = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1), jnp.float32)
    mass = float(jnp.exp(em.log_prob(params, pts, "full")).sum()) * (g[1] - g[0]) ** 2
    assert mass == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_component_log_prob_and_responsibilities_against_scipy(covariance_type):
    x = blobs(n=40, d=3)
    w, mu, cov = initial(x, 3, covariance_type)
    full = dense(cov, covariance_type, 3)
    want = np.stack([multivariate_normal(mu[k], full[k]).logpdf(x) for k in range(3)], 1)
    with jax.enable_x64(True):
        params = em.params_from_moments(w, mu, cov, covariance_type)
        got = np.asarray(em.component_log_prob(params, x, covariance_type))
        lp, r = (np.asarray(a) for a in em.responsibilities(params, x, covariance_type))
        back = np.asarray(em.covariances_from_precisions_cholesky(params["precisions_cholesky"],
                                                                  covariance_type))
    np.testing.assert_allclose(got, want, rtol=1e-10)
    joint = want + np.log(w)
    np.testing.assert_allclose(lp, np.logaddexp.reduce(joint, axis=1), rtol=1e-10)
    np.testing.assert_allclose(r, np.exp(joint - lp[:, None]), atol=1e-12)
    np.testing.assert_allclose(back, cov, rtol=1e-10)  # covariances -> U -> covariances


def test_lower_triangular_inverse_against_numpy():
    rng = np.random.RandomState(0)
    a = np.tril(rng.randn(4, 9, 9)) + 5 * np.eye(9)
    with jax.enable_x64(True):
        got = np.asarray(jax.jit(em.lower_triangular_inverse)(jnp.asarray(a)))
    np.testing.assert_allclose(got, np.linalg.inv(a), rtol=1e-12, atol=1e-14)
    assert np.all(np.triu(got, 1) == 0)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_num_parameters_and_shapes_as_scikit_learn(covariance_type):
    k, d = 5, 7
    ref = GaussianMixture(k, covariance_type=covariance_type)
    ref.means_ = np.zeros((k, d))
    assert em.num_parameters(covariance_type, k, d) == ref._n_parameters()
    x = jnp.asarray(blobs(n=50, d=d), jnp.float32)
    params = jax.eval_shape(lambda x: kmeans.init_params(jax.random.key(0), x, k, covariance_type), x)
    assert params["precisions_cholesky"].shape == em.precisions_cholesky_shape(covariance_type, k, d)
    with pytest.raises(ValueError, match="choose one of full, tied, diag, spherical"):
        em.num_parameters("block", k, d)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_statistics_are_sums_over_the_batch(covariance_type):
    """The statistics of a batch are the sums of those of its parts (what makes the sharded
    E-step exact), and EM on the whole equals EM on the summed parts."""
    x = blobs(n=120)
    params = from_moments(*initial(x, 3, covariance_type), covariance_type)
    x = jnp.asarray(x, jnp.float32)
    whole = statistics(params, x, covariance_type)
    parts = [statistics(params, x[i:i + 40], covariance_type) for i in (0, 40, 80)]
    summed = em.add_statistics(em.add_statistics(parts[0], parts[1]), parts[2])
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(summed)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-3)
    stepped, ll = em_step(params, x, covariance_type, 1e-6)
    assert float(ll) == pytest.approx(float(whole.log_likelihood) / 120, rel=1e-6)
    for a, b in zip(jax.tree.leaves(stepped), jax.tree.leaves(m_step(summed, covariance_type, 1e-6))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_float32_moments_about_the_shift_stay_positive_definite():
    """Tight clusters far from the origin (std 0.01 at 100): the moments about the current means
    give float64's covariances in float32, where E[x x^T] - mu mu^T (the broken variant below)
    cancels to noise of ~1e-3, far above the variances (1e-4)."""
    rng = np.random.RandomState(0)
    x64 = np.concatenate([100.0 + 0.01 * rng.randn(200, 3), 101.0 + 0.01 * rng.randn(200, 3)])
    x = jnp.asarray(x64, jnp.float32)
    params = kmeans.init_params(jax.random.key(0), x, 2, "full", num_steps=2)
    new, _ = em_step(params, x, "full", 1e-6)
    cov = np.asarray(em.covariances_from_precisions_cholesky(new["precisions_cholesky"], "full"))
    want = np.stack([np.cov(x64[i * 200:(i + 1) * 200].T, bias=True) for i in (0, 1)])
    order = np.argsort(np.asarray(new["means"])[:, 0])
    np.testing.assert_allclose(cov[order], want + 1e-6 * np.eye(3), rtol=0.05, atol=3e-6)
    # the broken variant: raw second moments
    _, r = jax.jit(em.responsibilities, static_argnums=2)(params, x, "full")
    nk = r.sum(0)
    mu = (r.T @ x) / nk[:, None]
    raw = jnp.einsum("bk,bd,be->kde", r, x, x) / nk[:, None, None] - mu[:, :, None] * mu[:, None, :]
    assert np.max(np.abs(np.asarray(raw)[order] - want)) > 1e-4


@pytest.mark.parametrize("covariance_type", TYPES)
def test_collapsed_and_empty_components_stay_finite(covariance_type):
    """A singleton component gets reg_covar I: a finite spike whose log-density at its point is
    positive (legitimate for a density: scikit-learn#8453; full covariances, whose moments are
    about each component's mean, get it to float32 precision); an empty component keeps finite
    parameters; with reg_covar = 0 duplicated points make the Cholesky factorisation fail, and
    all_finite (the train step's guard) sees it."""
    x = jnp.asarray(np.concatenate([np.random.RandomState(0).randn(50, 2), [[30.0, 30.0]]]),
                    jnp.float32)
    w, mu = jnp.array([0.5, 0.3, 0.2]), jnp.array([[0.0, 0.0], [30.0, 30.0], [-500.0, 500.0]])
    cov = {"full": jnp.stack([jnp.eye(2)] * 3), "tied": jnp.eye(2), "diag": jnp.ones((3, 2)),
           "spherical": jnp.ones(3)}[covariance_type]
    params = from_moments(w, mu, cov, covariance_type)
    for _ in range(3):
        params, _ = em_step(params, x, covariance_type, 1e-6)
    assert bool(all_finite(params))
    assert float(params["weights"][2]) < 1e-6  # the empty one
    if covariance_type == "full":
        np.testing.assert_allclose(np.asarray(params["precisions_cholesky"][1]), 1e3 * np.eye(2),
                                   rtol=1e-3, atol=1e-3)
        assert float(log_prob(params, x[-1:], "full")[0]) > 5.0  # log(1/51) + 2 log(1e3) - log 2 pi
    same = jnp.ones((10, 2), jnp.float32)
    p = from_moments(jnp.ones(2) / 2, jnp.zeros((2, 2)), jnp.stack([jnp.eye(2)] * 2), "full")
    assert not bool(all_finite(em_step(p, same, "full", 0.0)[0]))
    assert bool(all_finite(em_step(p, same, "full", 1e-6)[0]))


@pytest.mark.parametrize("covariance_type", TYPES)
def test_samples_have_the_mixture_moments(covariance_type):
    w, mu = np.array([0.3, 0.7]), np.array([[-2.0, 0.0], [2.0, 1.0]])
    full = np.array([[[0.5, 0.2], [0.2, 0.4]], [[0.3, -0.1], [-0.1, 0.6]]])
    cov = {"full": full, "tied": full[0], "diag": np.array([[0.5, 0.4], [0.3, 0.6]]),
           "spherical": np.array([0.5, 0.3])}[covariance_type]
    dense_cov = dense(cov, covariance_type, 2)
    params = from_moments(w, mu, cov, covariance_type)
    sample = jax.jit(em.sample, static_argnums=(2, 3), static_argnames="mean")
    x, k = (np.asarray(a) for a in sample(params, jax.random.key(0), 40_000, covariance_type))
    assert abs(np.mean(k == 1) - 0.7) < 0.01
    for j in (0, 1):
        np.testing.assert_allclose(x[k == j].mean(0), mu[j], atol=0.03)
        np.testing.assert_allclose(np.cov(x[k == j].T), dense_cov[j], atol=0.03)
    means, k2 = sample(params, jax.random.key(0), 8, covariance_type, mean=True)
    np.testing.assert_array_equal(np.asarray(means), mu[np.asarray(k2)])
