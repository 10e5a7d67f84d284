"""Each observation likelihood is normalised and matches its textbook formula.

Per-pixel probabilities are read off by making every case a one-pixel image of the batch
(`[N, 1, 1, 1]`), since each function sums over pixels and returns one number per example.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from gmzoo.losses.likelihoods import (
    LIKELIHOODS,
    bernoulli_log_prob,
    categorical_log_prob,
    discretized_logistic_log_prob,
    gaussian_log_prob,
    resolve_likelihood,
)
from gmzoo.nn.heads import HEAD_LIKELIHOODS


def _pixels(v) -> jax.Array:
    """Values as a batch of one-pixel images, `[N, 1, 1, 1]`."""
    return jnp.asarray(v, jnp.float32).reshape(-1, 1, 1, 1)


def test_names_match_decoder_heads():
    assert tuple(LIKELIHOODS) == HEAD_LIKELIHOODS


def test_bernoulli_sums_to_one_over_0_and_1_and_over_pixels():
    logits = np.array([-60.0, -5.0, -0.3, 0.0, 2.0, 60.0], np.float32)
    x = np.concatenate([np.zeros_like(logits), np.ones_like(logits)])
    x_img = jnp.array([1.0, 0.0, 1.0, 1.0]).reshape(1, 2, 2, 1)
    l_img = jnp.array([0.5, -1.0, 2.0, 0.0]).reshape(1, 2, 2, 1)
    per_pixel = jax.jit(bernoulli_log_prob)(_pixels(x), _pixels(np.tile(logits, 2)))
    image = bernoulli_log_prob(x_img, l_img)
    p0, p1 = np.split(np.exp(np.asarray(per_pixel, np.float64)), 2)
    np.testing.assert_allclose(p0 + p1, 1.0, rtol=1e-6)
    np.testing.assert_allclose(p1, special.expit(logits), rtol=1e-5)
    p = special.expit(np.asarray(l_img).ravel())
    expected = np.sum(np.where(np.asarray(x_img).ravel() == 1, np.log(p), np.log1p(-p)))
    np.testing.assert_allclose(image, [expected], rtol=1e-6)


@pytest.mark.parametrize("num_levels", [2, 5, 17, 256])
def test_discretized_logistic_sums_to_one_over_all_levels(num_levels):
    levels = 2.0 * np.arange(num_levels) / (num_levels - 1) - 1.0  # the grid of [-1, 1]
    means, log_scales = [-3.0, -1.0, -0.2, 0.0, 0.7, 1.0, 4.0], [-7.0, -3.0, 0.0, 2.0]
    grid = np.array(list(itertools.product(means, log_scales, levels)), np.float32)  # [N, 3]
    log_p = jax.jit(discretized_logistic_log_prob, static_argnames="num_levels")(
        _pixels(grid[:, 2]), _pixels(grid[:, 0]), _pixels(grid[:, 1]), num_levels=num_levels
    )
    mass = np.exp(np.asarray(log_p, np.float64)).reshape(len(means) * len(log_scales), num_levels)
    np.testing.assert_allclose(mass.sum(-1), 1.0, atol=2e-5)


def test_discretized_logistic_bins_match_logistic_cdf_and_have_finite_gradients():
    num_levels, mean, scale = 17, 0.1, 0.3
    half = 1.0 / (num_levels - 1)
    ks = np.array([0, 3, 8, 16])
    x = 2.0 * ks / (num_levels - 1) - 1.0
    upper = np.where(ks == num_levels - 1, 1.0, stats.logistic.cdf(x + half, mean, scale))
    lower = np.where(ks == 0, 0.0, stats.logistic.cdf(x - half, mean, scale))

    def log_p(mean, log_scale):
        return discretized_logistic_log_prob(_pixels(x), mean, log_scale, num_levels=num_levels)

    @jax.jit
    def run():
        at_extremes = jax.grad(lambda m, s: jnp.sum(log_p(m, s)), argnums=(0, 1))(
            _pixels([-30.0, 30.0, 0.0, 0.0]), _pixels([-7.0, -7.0, -7.0, 5.0])
        )  # lowest / middle / top levels with extreme means and scales
        return log_p(_pixels([mean] * 4), _pixels([np.log(scale)] * 4)), at_extremes

    values, grads = run()
    np.testing.assert_allclose(values, np.log(upper - lower), rtol=1e-5)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


def test_categorical_sums_to_one_and_picks_level():
    num_levels = 7
    logits = np.random.default_rng(0).normal(size=num_levels).astype(np.float32) * 3.0
    levels = np.arange(num_levels + 1, dtype=np.float32)  # the last one is out of range
    logits_per_case = jnp.broadcast_to(logits, (num_levels + 1, 1, 1, 1, num_levels))
    log_p = jax.jit(categorical_log_prob)(_pixels(levels), logits_per_case)
    log_p = np.asarray(log_p, np.float64)
    np.testing.assert_allclose(np.sum(np.exp(log_p[:-1])), 1.0, rtol=1e-5)
    np.testing.assert_allclose(log_p[:-1], special.log_softmax(logits), rtol=1e-5)
    assert np.isnan(log_p[-1])  # a level outside 0..L-1 is an error, not a silent 0


def test_gaussian_integrates_to_one_and_matches_scipy():
    grid = np.linspace(-12.0, 12.0, 20_001)
    log_density = jax.jit(gaussian_log_prob)(
        _pixels(grid), _pixels(np.full_like(grid, 0.4)), _pixels(np.full_like(grid, np.log(1.5)))
    )
    np.testing.assert_allclose(np.trapezoid(np.exp(np.asarray(log_density, np.float64)), grid), 1.0, rtol=1e-4)
    i = 11_083  # any grid point
    np.testing.assert_allclose(log_density[i], stats.norm(0.4, 1.5).logpdf(grid[i]), rtol=1e-5)


def test_resolve_likelihood_unpacks_tuples_and_validates():
    x = jnp.linspace(-1.0, 1.0, 16).reshape(2, 2, 4, 1)
    mean, log_scale = 0.5 * x, jnp.full_like(x, -1.0)

    @jax.jit
    def run():
        return (
            resolve_likelihood("gaussian")(x, (mean, log_scale)) - gaussian_log_prob(x, mean, log_scale),
            resolve_likelihood("discretized_logistic", num_levels=17)(x, (mean, log_scale))
            - discretized_logistic_log_prob(x, mean, log_scale, num_levels=17),
            resolve_likelihood("bernoulli")(x > 0, mean) - bernoulli_log_prob(x > 0, mean),
        )

    for difference in run():
        np.testing.assert_array_equal(difference, 0.0)
    custom = lambda x, out: jnp.zeros(x.shape[0])  # noqa: E731
    assert resolve_likelihood(custom) is custom
    with pytest.raises(ValueError, match="num_levels"):
        resolve_likelihood("discretized_logistic")
    with pytest.raises(ValueError, match="bernoulli"):
        resolve_likelihood("poisson")
