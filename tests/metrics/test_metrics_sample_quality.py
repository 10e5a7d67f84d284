"""fd_and_kid and reference_fd: agreement with the lower-level functions, batching, and sensible
ordering on digits (held-out real data near the training data, noise far away)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from metrics_testdata import to01

from gmzoo.metrics.frechet import frechet_distance_from_features
from gmzoo.metrics.kid import kernel_inception_distance
from gmzoo.metrics.sample_quality import (compute_features, fd_and_kid, reference_fd,
                                          reference_fd_and_kid)

pytestmark = pytest.mark.optimized  # real compute: full XLA optimisation (tests/conftest.py)


def _projection_features(images01):
    """A fixed nonlinear feature map [B, 4, 4, 1] -> [B, 6] for synthetic checks."""
    w = np.random.default_rng(99).normal(size=(16, 6)).astype(np.float32)
    return np.tanh(np.asarray(images01).reshape(len(images01), -1) @ w)


def test_compute_features_batches_and_pads():
    x = np.random.default_rng(0).uniform(size=(7, 4, 4, 1)).astype(np.float32)
    seen = []

    def feature_fn(batch):
        seen.append(batch.shape[0])
        return _projection_features(batch)

    out = compute_features(feature_fn, x, batch_size=3)
    assert out.shape == (7, 6) and out.dtype == np.float32
    assert seen == [3, 3, 3]  # last chunk padded to the same size
    np.testing.assert_allclose(out, _projection_features(x), rtol=1e-6)


def test_fd_and_kid_agrees_with_building_blocks():
    rng = np.random.default_rng(1)
    real = rng.uniform(size=(300, 4, 4, 1)).astype(np.float32)
    fake = (rng.uniform(size=(200, 4, 4, 1)) * 0.5).astype(np.float32)  # darker
    out = fd_and_kid(_projection_features, real, fake, kid_subsets=10, kid_subset_size=100)
    assert set(out) == {"fd", "kid", "kid_std"}
    rf, ff = _projection_features(real), _projection_features(fake)
    assert out["fd"] == pytest.approx(frechet_distance_from_features(rf, ff), rel=1e-6)
    kid, kid_std = kernel_inception_distance(rf, ff, num_subsets=10, subset_size=100)
    assert out["kid"] == pytest.approx(kid, rel=1e-5)
    assert out["kid_std"] == pytest.approx(kid_std, rel=1e-4)
    assert out["fd"] > 0 and out["kid"] > 0


def test_digits_reference_fd_small_and_noise_far(digits_net):
    feature_fn = functools.partial(digits_net.features, digits_net.params)
    train01, test01 = to01(digits_net.train), to01(digits_net.test)
    ref = reference_fd(feature_fn, train01, test01)
    noise = np.random.default_rng(2).uniform(size=test01.shape).astype(np.float32)
    far = fd_and_kid(feature_fn, train01, noise, kid_subsets=10, kid_subset_size=360)
    near = reference_fd_and_kid(feature_fn, train01, test01, kid_subsets=10,
                                kid_subset_size=360)
    assert near["fd"] == pytest.approx(ref, rel=1e-9)
    assert 0 < ref < far["fd"] / 10
    assert abs(near["kid"]) < far["kid"] / 10
    # Shuffling the pixels keeps the intensities but destroys the digits: FD in between.
    perm = np.random.default_rng(3).permutation(64)
    shuffled = test01.reshape(-1, 64)[:, perm].reshape(test01.shape)
    mid = fd_and_kid(feature_fn, train01, shuffled, kid_subsets=10, kid_subset_size=360)
    assert ref < mid["fd"]


def test_too_few_images_raise():
    x = np.zeros((1, 4, 4, 1), np.float32)
    with pytest.raises(ValueError, match=">= 2 real and >= 2 fake"):
        fd_and_kid(_projection_features, np.zeros((5, 4, 4, 1), np.float32), x)
    with pytest.raises(ValueError, match=r"\[N >= 1, H, W, C\]"):
        compute_features(_projection_features, np.zeros((4, 4, 1)))
