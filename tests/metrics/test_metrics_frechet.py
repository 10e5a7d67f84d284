"""Frechet distance and the PSD matrix square root against scipy and closed forms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from gmzoo.metrics.frechet import (feature_stats, frechet_distance,
                                   frechet_distance_from_features, sqrtm_psd)


def _relu_features(rng: np.random.Generator, n: int, shift: float = 0.0,
                   d: int = 64) -> np.ndarray:
    """Correlated, partly-zero features like a ReLU penultimate layer: [n, d] float32."""
    mix = np.random.default_rng(123).normal(size=(d, d)) / np.sqrt(d)
    return np.maximum(rng.normal(size=(n, d)) @ mix + shift, 0.0).astype(np.float32)


def _scipy_fd(mu1, cov1, mu2, cov2) -> float:
    """The pytorch-fid formula: tr sqrtm(C1 C2) with scipy (non-symmetric form)."""
    covmean = scipy.linalg.sqrtm(cov1 @ cov2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2)
                 - 2 * np.trace(covmean))


def test_sqrtm_psd_matches_scipy_and_squares_back():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(64, 200))
    spd = (a @ a.T / 200).astype(np.float32)  # [64, 64], well conditioned
    s = np.asarray(sqrtm_psd(spd))
    ref = scipy.linalg.sqrtm(spd.astype(np.float64)).real
    np.testing.assert_allclose(s, ref, rtol=0, atol=1e-4 * np.abs(ref).max())
    np.testing.assert_allclose(s @ s, spd, atol=1e-4 * np.abs(spd).max())
    np.testing.assert_allclose(s, s.T, atol=1e-6)


def test_sqrtm_psd_rank_deficient_is_finite_and_exact():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(32, 5))
    low_rank = a @ a.T  # [32, 32], rank 5: eigh gives tiny negative eigenvalues
    with jax.enable_x64(True):
        s = np.asarray(sqrtm_psd(jnp.asarray(low_rank)))
    assert np.all(np.isfinite(s))
    np.testing.assert_allclose(s @ s, low_rank, atol=1e-6 * np.abs(low_rank).max())


def test_sqrtm_psd_rejects_non_square():
    with pytest.raises(ValueError, match="square matrix"):
        sqrtm_psd(np.ones((3, 4)))


def test_sqrtm_psd_jit_matches_eager():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(16, 40)).astype(np.float32)
    spd = a @ a.T / 40
    np.testing.assert_allclose(np.asarray(jax.jit(sqrtm_psd)(spd)), np.asarray(sqrtm_psd(spd)),
                               atol=1e-6)


@pytest.mark.parametrize("n,shift", [(360, 0.0), (2000, 0.0), (1000, 0.1), (1000, 1.0)])
def test_frechet_distance_matches_scipy_on_64_dim_features(n, shift):
    rng = np.random.default_rng(3)
    mu1, cov1 = feature_stats(_relu_features(rng, n))
    mu2, cov2 = feature_stats(_relu_features(rng, n, shift))
    ref = _scipy_fd(mu1, cov1, mu2, cov2)
    assert ref > 0
    assert frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(ref, rel=1e-8)
    # float32 is far less accurate but still in the right place.
    assert frechet_distance(mu1, cov1, mu2, cov2, float64=False) == pytest.approx(ref, rel=1e-3)


def test_frechet_distance_closed_form_diagonal():
    # Diagonal covariances commute: FD = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
    rng = np.random.default_rng(4)
    a, b = rng.uniform(0.1, 3.0, 10), rng.uniform(0.1, 3.0, 10)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_closed_form_scaled_covariance():
    # FD(N(0, C), N(0, s^2 C)) = tr(C) (1 - s)^2 for any PSD C.
    rng = np.random.default_rng(5)
    a = rng.normal(size=(20, 50))
    cov = a @ a.T / 50
    got = frechet_distance(np.zeros(20), cov, np.zeros(20), 4.0 * cov)
    assert got == pytest.approx(np.trace(cov), rel=1e-9)


def test_frechet_distance_zero_for_same_and_symmetric():
    rng = np.random.default_rng(6)
    x, y = _relu_features(rng, 500), _relu_features(rng, 500, 0.3)
    mu, cov = feature_stats(x)
    assert abs(frechet_distance(mu, cov, mu, cov)) < 1e-9 * np.trace(cov)
    assert frechet_distance_from_features(x, y) == pytest.approx(
        frechet_distance_from_features(y, x), rel=1e-9)


def test_frechet_distance_singular_covariances():
    # Fewer samples than dims (rank 9 in 64 dims): with equal covariances FD is the squared mean
    # shift; the 55 zero eigenvalues must not add sqrt(round-off) terms to the trace.
    rng = np.random.default_rng(7)
    x = rng.normal(size=(10, 64))
    mu, cov = feature_stats(x)
    shift = np.full(64, 0.5)
    assert frechet_distance(mu, cov, mu + shift, cov) == pytest.approx(64 * 0.25, rel=1e-8)


def test_feature_stats_matches_numpy():
    x = np.random.default_rng(8).normal(size=(50, 7)).astype(np.float32)
    mu, cov = feature_stats(x)
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-10)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="mu \\[F\\] and cov \\[F, F\\]"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="N >= 2"):
        feature_stats(np.zeros((1, 3)))
