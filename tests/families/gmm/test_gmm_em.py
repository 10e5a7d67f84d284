"""EM for Gaussian mixtures against its guarantees and against scikit-learn's GaussianMixture."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

from gmzoo.families.gmm import em, kmeans


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


@pytest.mark.parametrize("covariance_type", em.COVARIANCE_TYPES)
def test_matches_scikit_learn_in_float64(covariance_type):
    x, k, steps = blobs(), 3, 8
    w, mu, cov = initial(x, k, covariance_type)
    ref = GaussianMixture(k, covariance_type=covariance_type, max_iter=steps, tol=0.0,
                          weights_init=w, means_init=mu, reg_covar=1e-6,
                          precisions_init=np.linalg.inv(cov) if covariance_type in ("full", "tied")
                          else 1.0 / cov).fit(x)
    with jax.enable_x64(True):
        params = em.params_from_moments(w, mu, cov, covariance_type)
        params, lls = jax.jit(em.fit, static_argnums=(2, 3))(params, jnp.asarray(x), covariance_type,
                                                             steps)
        final_ll = float(jnp.mean(em.log_prob(params, jnp.asarray(x), covariance_type)))
        assert params["means"].dtype == jnp.float64
    want = ref.score(x)  # mean log-likelihood of the fitted model
    assert abs(final_ll - want) <= 1e-4 * abs(want), (final_ll, want)
    np.testing.assert_allclose(np.asarray(params["weights"]), ref.weights_, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(np.asarray(params["means"]), ref.means_, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("covariance_type", em.COVARIANCE_TYPES)
def test_log_likelihood_never_decreases(covariance_type):
    x = jnp.asarray(blobs(seed=3), jnp.float32)
    params = kmeans.init_params(jax.random.key(0), x, 4, covariance_type)
    _, lls = em.fit(params, x, covariance_type, 25)
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
