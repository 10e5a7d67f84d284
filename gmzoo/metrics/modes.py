"""Mode coverage of samples from a mixture with known centres: the ring-of-8 / grid-of-25 GAN
evaluation (Metz et al. 2017, Unrolled GANs; Srivastava et al. 2017, VEEGAN, Sec. 5.1;
Lin et al. 2018, PacGAN, Sec. 5; Dumoulin et al. 2017, ALI).

Each sample x_n is assigned to its nearest centre (Euclidean; ties to the lower index)

    k(n) = argmin_k ||x_n - c_k||_2,                                                     (1)

and is *high quality* if it lies within `threshold` standard deviations of that centre,

    ||x_n - c_k(n)||_2 <= threshold * std                                                (2)

(VEEGAN: "within three standard deviations of the nearest mode"). With n_k the number of
high-quality samples assigned to centre k and H = sum_k n_k,

    modes_covered      = #{k : n_k >= min_count}                                         (3)
    high_quality_share = H / N                                                           (4)
    kl_to_uniform      = KL(p || U) = sum_k p_k log(M p_k) = log M - entropy(p),
                         p_k = n_k / H  (0 log 0 = 0)                                    (5)

(5) is KL(p || U) between the empirical mode distribution p of the high-quality samples and the
uniform distribution U over the M modes (the true mixture's weights): 0 for perfectly balanced
modes, log M when every high-quality sample is at one mode, NaN when there are none (H = 0).
It is the direction that stays finite when modes are missing (the reverse KL(U || p) is infinite
as soon as one mode has no sample).

`min_count` (3): None (the default) is PacGAN's rule, a mode counts as covered when it has at
least a fifth of the N / M samples a uniform mixture puts there, ceil(0.2 N / M) and at least 1
(20 of 2500 samples for the 25-Gaussian grid); `min_count=1` is VEEGAN's rule (any high-quality
sample nearest to the centre counts), which rewards a generator for a handful of stray samples.

In 2-D with N(c_k, std^2 I) components (and centres farther apart than 2 threshold std, so (1)
picks the own centre), ||x - c|| / std is chi-distributed with 2 degrees of freedom and the
expected high-quality share of true samples is P(chi_2 <= 3) = 1 - exp(-9/2) = 0.98889 (in d
dimensions the regularised lower incomplete gamma P(d/2, threshold^2 / 2); 0.99730 in 1-D).

The core (`mode_counts`, jitted) forms all N x M distances at once ([N, M, d] differences, exact
rather than the |x|^2 - 2 x.c + |c|^2 expansion); it recompiles for each new (N, M, d).

Non-finite samples are never high quality (their comparisons (2) are false), so a diverged
generator scores low instead of raising; (1) still assigns them to some centre, which only
`assigned_counts` sees.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

PACGAN_FRACTION = 5  # default min_count = ceil(N / (5 M)): a fifth of the uniform count N / M


@jax.jit
def mode_counts(samples: jax.Array, centres: jax.Array, radius: jax.Array
                ) -> tuple[jax.Array, jax.Array]:
    """Jitted core of (1)-(2): samples [N, d], centres [M, d], radius = threshold * std ->
    (high-quality counts n_k [M] int32, all-sample counts of assignment (1) [M] int32)."""
    diff = samples[:, None, :] - centres[None, :, :]  # [N, M, d]
    dist = jnp.sqrt(jnp.sum(jnp.square(diff), axis=-1))  # [N, M]
    nearest = jnp.argmin(dist, axis=1)  # [N], ties to the lower index
    near_dist = jnp.take_along_axis(dist, nearest[:, None], axis=1)[:, 0]  # [N]
    high = near_dist <= radius  # [N], False for NaN
    one_hot = jax.nn.one_hot(nearest, centres.shape[0], dtype=jnp.int32)  # [N, M]
    return (jnp.sum(one_hot * high[:, None].astype(jnp.int32), axis=0),
            jnp.sum(one_hot, axis=0))


def kl_to_uniform(counts: ArrayLike) -> float:
    """(5): KL(p || U) of the distribution p_k = counts_k / sum(counts) over M modes, in nats;
    NaN if every count is 0."""
    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    if total <= 0:
        return float("nan")
    p = counts / total
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] * counts.size)))


def default_min_count(num_samples: int, num_modes: int) -> int:
    """PacGAN's threshold for (3): ceil(0.2 N / M) = ceil(N / (5 M)) (exact integer
    arithmetic), at least 1."""
    return max(1, -(-num_samples // (PACGAN_FRACTION * num_modes)))


def mode_coverage(
    samples: ArrayLike,
    centres: ArrayLike,
    std: float,
    *,
    threshold: float = 3.0,
    min_count: int | None = None,
) -> dict[str, Any]:
    """Mode coverage (1)-(5) of samples [N, d] from a mixture with centres [M, d] and common
    isotropic component std (e.g. `gmzoo.data.toys.ring_centres(8, 2.0)` and 0.05).

    Returns a dict of host values:
      modes_covered: int, (3);  num_modes: int, M;  min_count: int, the threshold used in (3);
      high_quality_share: float, (4);  kl_to_uniform: float, (5) (NaN if no high-quality sample);
      counts: int64 [M], n_k, high-quality samples per centre;
      assigned_counts: int64 [M], all samples per nearest centre (1), high quality or not.
    """
    samples_shape, centres_shape = np.shape(samples), np.shape(centres)
    if (len(samples_shape) != 2 or len(centres_shape) != 2
            or samples_shape[1] != centres_shape[1]):
        raise ValueError(
            f"mode_coverage needs samples [N, d] and centres [M, d] with the same d, got "
            f"{samples_shape} and {centres_shape}")
    num_samples, num_modes = samples_shape[0], centres_shape[0]
    if num_samples < 1 or num_modes < 1 or samples_shape[1] < 1:
        raise ValueError(f"mode_coverage needs N >= 1 samples and M >= 1 centres of dimension "
                         f"d >= 1, got samples {samples_shape} and centres {centres_shape}")
    if np.ndim(std) != 0:
        raise ValueError(f"std must be one scalar (isotropic components of a common std), got "
                         f"shape {np.shape(std)}")
    if not float(std) > 0 or not float(threshold) > 0:
        raise ValueError(f"std and threshold must be positive, got std={std!r}, "
                         f"threshold={threshold!r}")
    if min_count is None:
        min_count = default_min_count(num_samples, num_modes)
    elif isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) \
            or min_count < 1:
        raise ValueError(f"min_count must be a positive int (or None for ceil(0.2 N / M)), got "
                         f"{min_count!r}")
    if not np.all(np.isfinite(np.asarray(centres))):
        raise ValueError("centres must be finite")

    counts, assigned = mode_counts(jnp.asarray(samples, jnp.float32),
                                   jnp.asarray(centres, jnp.float32),
                                   jnp.float32(float(threshold) * float(std)))
    counts = np.asarray(counts, np.int64)  # [M]
    return {
        "modes_covered": int(np.sum(counts >= min_count)),
        "num_modes": int(num_modes),
        "min_count": int(min_count),
        "high_quality_share": float(counts.sum() / num_samples),
        "kl_to_uniform": kl_to_uniform(counts),
        "counts": counts,
        "assigned_counts": np.asarray(assigned, np.int64),
    }
