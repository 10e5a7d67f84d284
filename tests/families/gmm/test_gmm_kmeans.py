"""k-means++ seeding, Lloyd's steps and the mixture initialisation built on them
(gmzoo.families.gmm.kmeans), against exact probabilities and scikit-learn."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.mixture._gaussian_mixture import _estimate_gaussian_parameters

from gmzoo.data import toys
from gmzoo.families.gmm import em, kmeans


def test_plain_kmeans_plusplus_draws_by_squared_distance():
    """num_trials=1: the first seed is uniform, the second has probability D(x)^2 / sum D^2;
    the frequencies of 20,000 seedings match the exact joint distribution."""
    x = jnp.array([[0.0], [1.0], [3.0], [7.0]])
    keys = jax.random.split(jax.random.key(0), 20_000)
    _, idx = jax.vmap(lambda k: kmeans.kmeans_plusplus(k, x, 2, num_trials=1))(keys)
    idx = np.asarray(idx)
    pts = np.asarray(x)[:, 0]
    d2 = (pts[:, None] - pts[None]) ** 2  # [first, second]
    exact = d2 / d2.sum(1, keepdims=True) / len(pts)
    freq = np.zeros((4, 4))
    np.add.at(freq, (idx[:, 0], idx[:, 1]), 1.0 / len(idx))
    np.testing.assert_allclose(freq, exact, atol=0.01)
    assert np.all(np.diag(freq) == 0)  # never the same point twice


def test_greedy_seeding_finds_every_separated_cluster():
    x = toys.ring_of_gaussians(jax.random.key(0), 800)
    centres = np.asarray(toys.ring_centres(8))
    for seed in range(10):
        seeds, idx = kmeans.kmeans_plusplus(jax.random.key(seed), x, 8)
        nearest = np.argmin(((np.asarray(seeds)[:, None] - centres[None]) ** 2).sum(-1), axis=1)
        assert sorted(nearest) == list(range(8)), (seed, nearest)
        np.testing.assert_array_equal(np.asarray(seeds), np.asarray(x)[np.asarray(idx)])
    assert kmeans.default_trials(8) == 4  # 2 + floor(log 8), as scikit-learn
    with pytest.raises(ValueError, match="at least k=9 points"):
        kmeans.kmeans_plusplus(jax.random.key(0), x[:8], 9)


def test_lloyd_matches_scikit_learn_from_the_same_centres():
    rng = np.random.RandomState(0)
    x = np.concatenate([rng.randn(100, 2) + c for c in ([0, 0], [4, 0], [0, 4], [3, 3])])
    start = x[[0, 1, 2, 3]]  # a poor start, all in one cluster: Lloyd has work to do
    ref = KMeans(4, init=start, n_init=1, max_iter=20, tol=0.0, algorithm="lloyd").fit(x)
    got = kmeans.lloyd(jnp.asarray(x, jnp.float32), jnp.asarray(start, jnp.float32), 20)
    np.testing.assert_allclose(np.asarray(got), ref.cluster_centers_, atol=1e-4)


@pytest.mark.parametrize("covariance_type", em.COVARIANCE_TYPES)
def test_init_is_the_m_step_of_the_hard_assignment(covariance_type):
    """Weights, means and covariances of the clusters (scikit-learn's estimator on one-hot
    responsibilities, float64)."""
    rng = np.random.RandomState(1)
    x = np.concatenate([rng.randn(60, 3) * s + c for s, c in ((0.5, 0), (1.0, 5), (0.3, -4))])
    with jax.enable_x64(True):
        params = kmeans.init_params(jax.random.key(0), jnp.asarray(x), 3, covariance_type,
                                    num_steps=5)
        seeds, _ = kmeans.kmeans_plusplus(jax.random.key(0), jnp.asarray(x), 3)
        centres = kmeans.lloyd(jnp.asarray(x), seeds, 5)
        labels = np.asarray(kmeans.assign(jnp.asarray(x), centres))
        cov = np.asarray(em.covariances_from_precisions_cholesky(params["precisions_cholesky"],
                                                                 covariance_type))
    resp = np.eye(3)[labels]
    nk, means, want = _estimate_gaussian_parameters(x, resp, 1e-6, covariance_type)
    np.testing.assert_allclose(np.asarray(params["weights"]), nk / nk.sum(), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(params["means"]), means, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cov, want, rtol=1e-8)
    assert sorted(np.bincount(labels)) == [60, 60, 60]  # found the three blobs
