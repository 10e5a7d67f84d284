"""Mode coverage: exact counts on hand-made samples, the chi-distribution share of true mixture
samples, a collapsed generator, samples on the ring between the modes, and input validation."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from gmzoo.data.toys import ring_centres, ring_of_gaussians
from gmzoo.metrics.modes import default_min_count, kl_to_uniform, mode_counts, mode_coverage

RING = ring_centres(8, 2.0)  # [8, 2], radius 2


def grid_centres():
    """The 25-Gaussian grid benchmark: centres at {-4, -2, 0, 2, 4}^2, [25, 2]."""
    a = np.arange(-4.0, 5.0, 2.0)
    return np.stack(np.meshgrid(a, a, indexing="ij"), axis=-1).reshape(-1, 2)


def binomial_tolerance(p, n, z=4.0):
    return z * math.sqrt(p * (1 - p) / n)


def test_exact_counts_on_hand_made_samples():
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    samples = np.array([
        [0.5, 0.0],   # centre 0, high quality
        [0.0, -3.0],  # centre 0, exactly at threshold * std: high quality (<=)
        [3.5, 0.0],   # centre 0, too far
        [5.0, 0.0],   # tie between centres 0 and 1: the lower index, too far
        [10.0, 2.0],  # centre 1, high quality
        [6.0, 0.0],   # centre 1 (4 < 6), too far
        [0.0, 9.0],   # centre 2, high quality
    ])
    r = mode_coverage(samples, centres, 1.0, threshold=3.0, min_count=2)
    np.testing.assert_array_equal(r["counts"], [2, 1, 1])
    np.testing.assert_array_equal(r["assigned_counts"], [4, 2, 1])
    assert r["modes_covered"] == 1 and r["min_count"] == 2 and r["num_modes"] == 3
    assert r["high_quality_share"] == pytest.approx(4 / 7)
    # p = (1/2, 1/4, 1/4): KL(p || U) = 1/2 log(3/2) + 2 * 1/4 log(3/4)
    assert r["kl_to_uniform"] == pytest.approx(0.5 * math.log(1.5) + 0.5 * math.log(0.75))
    assert mode_coverage(samples, centres, 1.0, min_count=1)["modes_covered"] == 3
    # A tighter threshold drops [0, -3] and [10, 2]; std scales the radius the same way.
    tight = mode_coverage(samples, centres, 1.0, threshold=1.5, min_count=1)
    np.testing.assert_array_equal(tight["counts"], [1, 0, 1])
    np.testing.assert_array_equal(
        mode_coverage(samples, centres, 0.5, threshold=3.0, min_count=1)["counts"], [1, 0, 1])


def test_default_min_count_is_a_fifth_of_the_uniform_count():
    assert default_min_count(2500, 25) == 20  # PacGAN's 20 of 100 expected
    assert default_min_count(2000, 8) == 50
    assert default_min_count(2001, 8) == 51
    assert default_min_count(10, 8) == 1
    x = np.asarray(ring_of_gaussians(jax.random.key(0), 2000, std=0.05))
    assert mode_coverage(x, RING, 0.05)["min_count"] == 50


def test_kl_to_uniform_closed_forms():
    assert kl_to_uniform([5, 5, 5, 5]) == pytest.approx(0.0, abs=1e-12)
    assert kl_to_uniform([7, 0, 0, 0]) == pytest.approx(math.log(4))
    assert kl_to_uniform([3, 1, 0, 0]) == pytest.approx(0.75 * math.log(3))
    assert math.isnan(kl_to_uniform([0, 0, 0]))


@pytest.mark.parametrize("std", [0.05, 0.02])
def test_true_ring_samples_cover_all_modes_with_the_chi_share(std):
    # ||x - c|| / std ~ chi_2: P(<= 3) = 1 - exp(-9/2) = 0.98889 (the neighbouring centres are
    # 1.53 apart, so every sample's nearest centre is its own).
    n = 20000
    x = ring_of_gaussians(jax.random.key(1), n, std=std)
    r = mode_coverage(x, RING, std)
    expected = 1.0 - math.exp(-4.5)
    assert expected == pytest.approx(0.988891, abs=1e-6)
    assert r["modes_covered"] == 8
    assert abs(r["high_quality_share"] - expected) < binomial_tolerance(expected, n)
    assert r["kl_to_uniform"] < 2e-3  # E ~ (M - 1) / (2 N) = 1.8e-4 for a balanced mixture
    assert r["assigned_counts"].sum() == n


@pytest.mark.parametrize("dim", [1, 2, 3, 5])
def test_high_quality_share_in_d_dimensions_is_the_regularised_gamma(dim):
    # P(chi_d <= 3) = P(d/2, 9/2): 0.99730 in 1-D, 0.98889 in 2-D, 0.97071 in 3-D.
    rng = np.random.default_rng(dim)
    n, m, std = 20000, 5, 0.1
    centres = 2.0 * np.arange(m)[:, None] * np.ones((1, dim))  # [m, dim], 20 sqrt(dim) std apart
    x = centres[rng.integers(0, m, n)] + std * rng.normal(size=(n, dim))
    r = mode_coverage(x, centres, std)
    expected = float(special.gammainc(dim / 2, 4.5))
    assert abs(r["high_quality_share"] - expected) < binomial_tolerance(expected, n)
    assert r["modes_covered"] == m


def test_collapsed_generator_covers_one_mode():
    n, std = 4000, 0.05
    noise = std * np.asarray(jax.random.normal(jax.random.key(2), (n, 2)))
    x = np.asarray(RING[3]) + noise  # every sample at centre 3
    for min_count in (None, 1):
        r = mode_coverage(x, RING, std, min_count=min_count)
        assert r["modes_covered"] == 1
    assert r["counts"][3] == r["counts"].sum() and r["assigned_counts"][3] == n
    assert r["high_quality_share"] > 0.98  # the samples are good, only one mode
    assert r["kl_to_uniform"] == pytest.approx(math.log(8))


def test_samples_on_the_ring_between_the_centres_are_low_quality():
    std = 0.02
    # Exactly half-way between neighbours: 2 R sin(pi / 16) = 0.78 = 39 std from either centre.
    mid = 2.0 * math.pi * (np.arange(8) + 0.5) / 8
    x = 2.0 * np.stack([np.cos(mid), np.sin(mid)], axis=-1).repeat(10, axis=0)  # [80, 2]
    r = mode_coverage(x, RING, std, min_count=1)
    assert r["modes_covered"] == 0 and r["high_quality_share"] == 0.0
    assert math.isnan(r["kl_to_uniform"])
    assert r["assigned_counts"].sum() == 80
    # Uniform on the circle: a sample is within 3 std of a centre when its angle is within
    # delta = 2 arcsin(3 std / (2 R)) of it, a share 8 * 2 delta / (2 pi) = 0.0764.
    n = 20000
    theta = np.asarray(jax.random.uniform(jax.random.key(3), (n,), maxval=2 * math.pi))
    x = 2.0 * np.stack([np.cos(theta), np.sin(theta)], axis=-1)
    expected = 8 * 2 * math.asin(3 * std / 4.0) / math.pi
    r = mode_coverage(x, RING, std)
    assert abs(r["high_quality_share"] - expected) < binomial_tolerance(expected, n)
    # Each mode gets about 0.076 N / 8 high-quality samples, under PacGAN's N / 40: none covered,
    # while VEEGAN's any-sample rule counts all 8.
    assert r["modes_covered"] == 0
    assert mode_coverage(x, RING, std, min_count=1)["modes_covered"] == 8


def test_jitted_counts_match_a_numpy_loop_on_the_grid():
    rng = np.random.default_rng(4)
    centres = grid_centres()
    n = 3000
    x = centres[rng.integers(0, 25, n)] + rng.choice([0.03, 0.1, 0.5], n)[:, None] * rng.normal(
        size=(n, 2))
    radius = 3 * 0.05
    hq, assigned = np.zeros(25, int), np.zeros(25, int)
    for xi in x:
        dist = np.linalg.norm(centres - xi, axis=1)
        k = int(np.argmin(dist))
        assigned[k] += 1
        hq[k] += dist[k] <= radius
    got_hq, got_assigned = mode_counts(jnp.asarray(x, jnp.float32), jnp.asarray(centres,
                                       jnp.float32), jnp.float32(radius))
    np.testing.assert_array_equal(got_hq, hq)
    np.testing.assert_array_equal(got_assigned, assigned)
    assert 0 < hq.sum() < n  # the test data has both kinds


def test_non_finite_samples_are_never_high_quality():
    x = np.array([[2.0, 0.0], [np.nan, 0.0], [np.inf, np.inf], [2.0, 0.01]])
    r = mode_coverage(x, RING, 0.05, min_count=1)
    assert r["counts"].sum() == 2 and r["high_quality_share"] == 0.5
    assert r["assigned_counts"].sum() == 4


@pytest.mark.parametrize("samples, centres, kwargs, match", [
    (np.zeros(5), RING, {}, r"samples \[N, d\]"),
    (np.zeros((5, 3)), RING, {}, "same d"),
    (np.zeros((0, 2)), RING, {}, "N >= 1"),
    (np.zeros((5, 2)), np.zeros((0, 2)), {}, "M >= 1"),
    (np.zeros((5, 2)), RING, {"std": -1.0}, "positive"),
    (np.zeros((5, 2)), RING, {"std": np.ones(8)}, "one scalar"),
    (np.zeros((5, 2)), RING, {"threshold": 0.0}, "positive"),
    (np.zeros((5, 2)), RING, {"min_count": 0}, "min_count"),
    (np.zeros((5, 2)), RING, {"min_count": 2.5}, "min_count"),
    (np.zeros((5, 2)), np.full((8, 2), np.nan), {}, "finite"),
])
def test_bad_inputs_are_refused(samples, centres, kwargs, match):
    kwargs = {"std": 0.05, **kwargs}
    std = kwargs.pop("std")
    with pytest.raises(ValueError, match=match):
        mode_coverage(samples, centres, std, **kwargs)
