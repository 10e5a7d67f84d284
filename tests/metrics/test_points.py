"""The energy distance against a direct double loop, its sign and its power."""

import numpy as np
import pytest

from gmzoo.metrics import points


def _direct(x, y):
    d = lambda a, b: np.linalg.norm(a - b)
    n, m = len(x), len(y)
    xy = sum(d(a, b) for a in x for b in y) / (n * m)
    xx = sum(d(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(d(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    return 2 * xy - xx - yy


def test_matches_the_double_loop(monkeypatch):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(13, 2)), rng.normal(1.0, size=(9, 2))
    monkeypatch.setattr(points, "BLOCK", 4)  # several row blocks
    np.testing.assert_allclose(points.energy_distance(x, y), _direct(x, y), rtol=1e-12)


def test_unbiased_near_zero_for_one_distribution_and_large_for_two():
    rng = np.random.default_rng(1)
    same = [points.energy_distance(rng.normal(size=(300, 2)), rng.normal(size=(400, 2)))
            for _ in range(20)]
    assert abs(np.mean(same)) < 0.01 and min(same) < 0  # fluctuates around 0
    # A mixture of two Gaussians and the Gaussian with its mean and covariance are told apart.
    mix = np.concatenate([rng.normal(-2, 0.1, (500, 2)), rng.normal(2, 0.1, (500, 2))])
    gauss = rng.multivariate_normal(mix.mean(0), np.cov(mix.T), 1000)
    assert points.energy_distance(mix, gauss) > 20 * max(abs(v) for v in same)


def test_refusals_and_non_finite():
    with pytest.raises(ValueError, match="same d"):
        points.energy_distance(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        points.energy_distance(np.zeros((1, 2)), np.zeros((3, 2)))
    assert points.energy_distance(np.array([[0, 0], [np.nan, 1]]), np.zeros((3, 2))) == np.inf


def test_spread_subset_takes_every_part_of_a_set_stored_by_component():
    """moons stores its upper moon first: a prefix is one moon, the strided subset both (the
    held-out reference of the evaluator's energy distance took the prefix before)."""
    from gmzoo.data import registry
    from gmzoo.metrics.points import spread_subset

    src = registry.load("moons", "test")
    sub = spread_subset(src.points, 1000)
    assert sub.shape == (1000, 2)
    lower = {tuple(p) for p in src.points[src.labels == 1]}
    share = np.mean([tuple(p) in lower for p in sub])
    assert 0.45 < share < 0.55, share
    assert np.mean([tuple(p) in lower for p in src.points[:1000]]) < 0.05  # the old prefix
    np.testing.assert_array_equal(spread_subset(src.points[:7], 1000), src.points[:7])
