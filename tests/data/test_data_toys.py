"""2-D toys: shapes, dtypes, determinism, geometry."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.data import toys

N = 1000  # one sample size throughout: each sampler compiles once


@pytest.mark.parametrize("fn", [toys.moons, toys.ring_of_gaussians, toys.swiss_roll])
def test_shape_dtype_determinism(fn):
    x = fn(jax.random.key(0), N)
    assert x.shape == (N, 2) and x.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(x)))
    np.testing.assert_array_equal(x, fn(jax.random.key(0), N))
    compiled = fn._cache_size()
    assert not np.allclose(x, fn(jax.random.key(1), N))
    assert fn._cache_size() == compiled  # a new key does not recompile


def test_ring_centres_and_modes():
    c = np.asarray(toys.ring_centres(8, 2.0))
    assert c.shape == (8, 2)
    np.testing.assert_allclose(np.linalg.norm(c, axis=-1), 2.0, rtol=1e-6)
    np.testing.assert_allclose(c[2], [0.0, 2.0], atol=1e-6)  # angle 2 pi * 2 / 8 = pi / 2
    x = np.asarray(toys.ring_of_gaussians(jax.random.key(0), N, num_modes=8, radius=2.0, std=0.05))
    d = np.linalg.norm(x[:, None, :] - c[None], axis=-1)  # [n, 8]
    assert d.min(1).max() < 6 * 0.05  # every point sits next to a centre
    counts = np.bincount(d.argmin(1), minlength=8)
    assert counts.min() > 85  # about 125 per mode
    np.testing.assert_allclose(np.std(x - c[d.argmin(1)]), 0.05, rtol=0.1)


def test_moons_geometry():
    x = np.asarray(toys.moons(jax.random.key(0), N, noise=0.0))
    upper, lower = x[: N // 2], x[N // 2 :]
    np.testing.assert_allclose(np.linalg.norm(upper, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(lower - [1.0, 0.5], axis=-1), 1.0, atol=1e-5)
    assert upper[:, 1].min() >= 0.0 and lower[:, 1].max() <= 0.5


def test_swiss_roll_radius_follows_angle():
    x = np.asarray(toys.swiss_roll(jax.random.key(0), N, noise=0.0), np.float64)
    r = 5.0 * np.linalg.norm(x, axis=-1)  # = t in [1.5 pi, 4.5 pi]
    assert 1.5 * math.pi - 1e-3 <= r.min() and r.max() <= 4.5 * math.pi + 1e-3
    np.testing.assert_allclose(np.cos(r), 5.0 * x[:, 0] / r, atol=1e-4)


def test_bad_n():
    with pytest.raises(ValueError, match="n must be a positive int"):
        toys.moons(jax.random.key(0), 0)
    with pytest.raises(ValueError, match="num_modes"):
        toys.ring_centres(0)
