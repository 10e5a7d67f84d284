"""KID: the unbiased MMD^2 estimator against a direct double loop, unbiasedness, and behaviour on
identical versus shifted distributions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.metrics.kid import kernel_inception_distance, mmd2_unbiased, polynomial_kernel


def _naive_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Binkowski et al. eq. for MMD^2_u written as explicit sums over index pairs."""
    def k(a, b):
        return (a @ b / len(a) + 1.0) ** 3
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd2_unbiased_matches_double_loop():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(9, 3)) + 0.5
    with jax.enable_x64(True):
        got = float(mmd2_unbiased(jnp.asarray(x), jnp.asarray(y)))
    assert got == pytest.approx(_naive_mmd2(x, y), rel=1e-10)


def test_polynomial_kernel_formula():
    x = np.array([[1.0, 2.0], [0.0, -1.0]], np.float32)
    y = np.array([[3.0, 1.0]], np.float32)
    np.testing.assert_allclose(np.asarray(polynomial_kernel(x, y)),
                               [[(5 / 2 + 1) ** 3], [(-1 / 2 + 1) ** 3]], rtol=1e-6)


def test_mmd2_unbiased_has_zero_mean_where_biased_does_not():
    # 4000 independent pairs of 10-point samples from one distribution: the unbiased estimate
    # averages to 0 within 4 standard errors, the biased V-statistic is clearly positive.
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=(4000, 10, 4)))
        y = jnp.asarray(rng.normal(size=(4000, 10, 4)))
        u = np.asarray(jax.vmap(mmd2_unbiased)(x, y))

        def biased(a, b):
            return (polynomial_kernel(a, a).mean() + polynomial_kernel(b, b).mean()
                    - 2 * polynomial_kernel(a, b).mean())
        v = np.asarray(jax.vmap(biased)(x, y))
    se = u.std() / np.sqrt(len(u))
    assert abs(u.mean()) < 4 * se
    assert v.mean() > 20 * se


def test_kid_near_zero_for_same_distribution_and_positive_for_shifted():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(500, 16)).astype(np.float32)
    same = rng.normal(size=(500, 16)).astype(np.float32)
    shifted = rng.normal(size=(500, 16)).astype(np.float32) + 0.3
    kid_same, std_same = kernel_inception_distance(real, same, num_subsets=20, subset_size=200)
    kid_shift, std_shift = kernel_inception_distance(real, shifted, num_subsets=20,
                                                     subset_size=200)
    assert abs(kid_same) < 0.03  # measured ~0.006; its subset std is ~0.01
    assert kid_shift > 0.2  # measured ~0.36
    assert kid_shift > 10 * std_same
    assert std_same > 0 and std_shift > 0


def test_kid_deterministic_given_key_and_depends_on_it():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    first = kernel_inception_distance(a, b, num_subsets=5, subset_size=100)
    again = kernel_inception_distance(a, b, num_subsets=5, subset_size=100,
                                      key=jax.random.key(0))
    other = kernel_inception_distance(a, b, num_subsets=5, subset_size=100,
                                      key=jax.random.key(1))
    assert first == again
    assert first != other


def test_kid_subset_size_is_clipped_to_the_smaller_set():
    # subset_size > N: every subset is the whole of both sets, so all subsets agree (std 0)
    # and the mean is MMD^2_u of the full sets.
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(40, 5)), rng.normal(size=(40, 5)) + 1.0
    kid, std = kernel_inception_distance(a, b, num_subsets=3, subset_size=1000)
    assert std == pytest.approx(0.0, abs=1e-12)
    assert kid == pytest.approx(_naive_mmd2(a, b), rel=1e-9)


def test_kid_bad_inputs_raise():
    with pytest.raises(ValueError, match="same d"):
        kernel_inception_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match=">= 2 points"):
        kernel_inception_distance(np.zeros((1, 3)), np.zeros((5, 3)))
