"""Kernel Inception Distance (Binkowski, Sutherland, Arbel & Gretton 2018, "Demystifying MMD GANs").

KID is the unbiased estimate of the squared MMD between real and generated features with the
cubic polynomial kernel

    k(x, y) = (x . y / d + 1)^3                                                        (1)

    MMD^2_u = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(m(m-1)) sum_{i != j} k(y_i, y_j)
              - 2/m^2 sum_{i, j} k(x_i, y_j)                                           (2)

averaged over `num_subsets` random subsets of m = min(subset_size, N_real, N_fake) points drawn
without replacement from each set (their reference code: 100 subsets of 1000). Unlike FD it is
unbiased, so its expectation is 0 for identical distributions whatever the sample size, and it
can come out slightly negative. The std over subsets is returned beside the mean. Computed in
float64 (local `jax.enable_x64`): (2) is a small difference of large kernel sums.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike


def polynomial_kernel(x: jax.Array, y: jax.Array) -> jax.Array:
    """Kernel matrix (1): [M, d] x [N, d] -> [M, N]."""
    d = x.shape[-1]
    return (x @ y.T / d + 1.0) ** 3


def mmd2_unbiased(x: jax.Array, y: jax.Array) -> jax.Array:
    """Unbiased MMD^2 (2) between samples x [M, d] and y [N, d] with kernel (1); M, N >= 2."""
    m, n = x.shape[0], y.shape[0]
    k_xx = polynomial_kernel(x, x)  # [M, M]
    k_yy = polynomial_kernel(y, y)  # [N, N]
    k_xy = polynomial_kernel(x, y)  # [M, N]
    sum_xx = jnp.sum(k_xx) - jnp.trace(k_xx)
    sum_yy = jnp.sum(k_yy) - jnp.trace(k_yy)
    return sum_xx / (m * (m - 1)) + sum_yy / (n * (n - 1)) - 2.0 * jnp.mean(k_xy)


def _subset_mmds(
    real: jax.Array, fake: jax.Array, key: jax.Array, num_subsets: int, m: int
) -> jax.Array:
    """MMD^2_u (2) on `num_subsets` subsets of size m: [num_subsets]. Sequential (lax.map)."""

    def one(i: jax.Array) -> jax.Array:
        key_real, key_fake = jax.random.split(jax.random.fold_in(key, i))
        idx_real = jax.random.choice(key_real, real.shape[0], (m,), replace=False)  # [m]
        idx_fake = jax.random.choice(key_fake, fake.shape[0], (m,), replace=False)  # [m]
        return mmd2_unbiased(real[idx_real], fake[idx_fake])

    return jax.lax.map(one, jnp.arange(num_subsets))


_subset_mmds_jit = jax.jit(_subset_mmds, static_argnums=(3, 4))


def kernel_inception_distance(
    real_features: ArrayLike,
    fake_features: ArrayLike,
    *,
    num_subsets: int = 100,
    subset_size: int = 1000,
    key: jax.Array | None = None,
) -> tuple[float, float]:
    """KID: mean and std over subsets of MMD^2_u (2) with kernel (1). Features [N, d].

    key defaults to the fixed `jax.random.key(0)` (evaluation uses a fixed key).
    """
    real_shape, fake_shape = np.shape(real_features), np.shape(fake_features)
    if len(real_shape) != 2 or len(fake_shape) != 2 or real_shape[1] != fake_shape[1]:
        raise ValueError(
            f"KID needs real and fake features [N, d] with the same d, got {real_shape} "
            f"and {fake_shape}"
        )
    m = min(subset_size, real_shape[0], fake_shape[0])
    if m < 2 or num_subsets < 1:
        raise ValueError(
            f"KID needs subsets of >= 2 points and num_subsets >= 1; got subset size {m} "
            f"(min of subset_size={subset_size}, N_real={real_shape[0]}, N_fake={fake_shape[0]}) "
            f"and num_subsets={num_subsets}"
        )
    key = jax.random.key(0) if key is None else key
    with jax.enable_x64(True):
        real = jnp.asarray(np.asarray(real_features, np.float64))
        fake = jnp.asarray(np.asarray(fake_features, np.float64))
        mmds = np.asarray(_subset_mmds_jit(real, fake, key, num_subsets, m))
    return float(mmds.mean()), float(mmds.std())
