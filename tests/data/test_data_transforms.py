"""Pixel transforms: ranges, endpoints, Bernoulli/uniform draws, bits/dim."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.data import transforms as T

LEVELS = np.arange(256, dtype=np.uint8)


@pytest.mark.parametrize("num_levels", [2, 17, 256])
def test_unit_and_symmetric_ranges(num_levels):
    k = LEVELS[:num_levels]
    u, s = T.to_unit(k, num_levels), T.to_symmetric(k, num_levels)
    assert u.dtype == jnp.float32 and s.dtype == jnp.float32
    np.testing.assert_allclose([u[0], u[-1], s[0], s[-1]], [0.0, 1.0, -1.0, 1.0], atol=1e-6)
    assert bool(jnp.all(jnp.diff(u) > 0))  # strictly increasing, evenly spaced
    np.testing.assert_allclose(u * (num_levels - 1), k, atol=1e-4)  # level k -> k / (L - 1)
    np.testing.assert_allclose(s, 2 * u - 1, atol=1e-6)


def test_binarize_fixed_threshold():
    x = jnp.array([0.0, 0.49, 0.5, 0.51, 1.0])
    np.testing.assert_array_equal(T.binarize_fixed(x), [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(T.binarize_fixed(x, threshold=0.2), [0, 1, 1, 1, 1])


def test_binarize_dynamic_is_bernoulli():
    x01 = jnp.broadcast_to(jnp.array([0.0, 0.3, 1.0]), (20000, 3))
    b = T.binarize_dynamic(jax.random.key(0), x01)
    assert set(np.unique(np.asarray(b))) == {0.0, 1.0}
    np.testing.assert_allclose(b.mean(0), [0.0, 0.3, 1.0], atol=0.015)
    again = T.binarize_dynamic(jax.random.key(0), x01)
    other = T.binarize_dynamic(jax.random.key(1), x01)
    assert bool(jnp.all(again == b)) and not bool(jnp.all(other == b))


@pytest.mark.parametrize("num_levels", [17, 256])
def test_dequantize_uniform_stays_in_bin(num_levels):
    k = jnp.tile(jnp.arange(num_levels, dtype=jnp.float32), 50)
    x = jax.jit(T.dequantize_uniform, static_argnums=2)(jax.random.key(3), k, num_levels)
    assert float(x.min()) >= 0.0 and float(x.max()) < 1.0
    np.testing.assert_array_equal(jnp.floor(x * num_levels), k)  # (k + u) / L lies in bin k
    frac = x * num_levels - k
    assert 0.4 < float(frac.mean()) < 0.6  # u is spread over [0, 1), not a constant


def test_bits_per_dim_convention():
    assert float(T.bits_per_dim(64 * math.log(17), 64)) == pytest.approx(4.087, abs=1e-3)
    assert float(T.bits_per_dim(784 * math.log(256), 784)) == pytest.approx(8.0, rel=1e-6)
    assert float(T.bits_per_dim(107.4, 64)) == pytest.approx(2.42, abs=0.005)
    np.testing.assert_allclose(T.bits_per_dim(jnp.array([0.0, 784 * math.log(2)]), 784), [0, 1])


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_levels must be an int >= 2"):
        T.to_unit(jnp.zeros(3), 1)
    with pytest.raises(ValueError, match="num_dims"):
        T.bits_per_dim(1.0, 0)
