"""VAE samplers: outputs in each likelihood's data space, with the right statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.models.vae import TinyHierarchicalVAE, TinyMLPVAE
from gmzoo.samplers.vae import sample_hierarchical_vae, sample_likelihood, sample_vae

N, L = 4000, 5
LOGITS = jnp.array([-2.0, 0.0, 1.5]).reshape(1, 1, 3, 1) * jnp.ones((N, 1, 3, 1))  # [N, 1, 3, 1]
LOC = jnp.array([-0.9, 0.2, 3.0]).reshape(1, 1, 3, 1) * jnp.ones((N, 1, 3, 1))
LOG_SCALE = jnp.full_like(LOC, np.log(0.2))
LEVEL_LOGITS = jnp.broadcast_to(jnp.array([2.0, 0.0, -1.0, 0.5, 1.0]), (N, 1, 3, 1, L))


@jax.jit
def _all_samples(key):
    outputs = {
        "bernoulli": LOGITS,
        "gaussian": (LOC, LOG_SCALE),
        "discretized_logistic": (LOC, LOG_SCALE),
        "categorical": LEVEL_LOGITS,
    }
    return {
        (name, mean): sample_likelihood(key, out, likelihood=name, num_levels=L, mean=mean)
        for name, out in outputs.items()
        for mean in (True, False)
    }


def test_sample_likelihood_ranges_and_statistics():
    s = {k: np.asarray(v) for k, v in _all_samples(jax.random.key(0)).items()}
    probs = 1.0 / (1.0 + np.exp(-np.asarray(LOGITS[0])))
    # bernoulli: probabilities, or {0, 1} draws with those frequencies
    np.testing.assert_allclose(s["bernoulli", True][0], probs, rtol=1e-6)
    assert set(np.unique(s["bernoulli", False])) == {0.0, 1.0}
    np.testing.assert_allclose(s["bernoulli", False].mean(0), probs, atol=4 * 0.5 / np.sqrt(N))
    # gaussian: mean, or draws with the decoder's mean and scale
    np.testing.assert_allclose(s["gaussian", True], LOC)
    np.testing.assert_allclose(s["gaussian", False].mean(0), LOC[0], atol=4 * 0.2 / np.sqrt(N))
    np.testing.assert_allclose(s["gaussian", False].std(0), 0.2, rtol=0.05)
    # discretized logistic: clipped mean, or draws on the L-level grid of [-1, 1]
    np.testing.assert_allclose(s["discretized_logistic", True][0].ravel(), [-0.9, 0.2, 1.0])
    grid = 2.0 * np.arange(L) / (L - 1) - 1.0
    draws = s["discretized_logistic", False]
    assert np.all(np.min(np.abs(draws[..., None] - grid), axis=-1) < 1e-6)
    assert np.all(draws[:, 0, 2, 0] == 1.0)  # mean 3.0, scale 0.2: always the top level
    # categorical: expected level, or level draws with the softmax frequencies
    p = np.exp(np.asarray(LEVEL_LOGITS[0, 0, 0, 0])) / np.exp(np.asarray(LEVEL_LOGITS[0, 0, 0, 0])).sum()
    np.testing.assert_allclose(s["categorical", True], np.sum(p * np.arange(L)), rtol=1e-5)
    counts = np.bincount(s["categorical", False].astype(int).ravel(), minlength=L) / draws.size
    np.testing.assert_allclose(counts, p, atol=0.02)


def test_sample_likelihood_errors():
    with pytest.raises(ValueError, match="num_levels"):
        sample_likelihood(jax.random.key(0), (LOC, LOG_SCALE), likelihood="discretized_logistic", mean=False)
    with pytest.raises(ValueError, match="likelihood must be one of"):
        sample_likelihood(jax.random.key(0), LOGITS, likelihood="poisson")


def test_model_samplers_shapes_and_ranges(numpy_init):
    vae = TinyMLPVAE(image_shape=(8, 8, 1), latent_dim=2, likelihood="bernoulli")
    hvae = TinyHierarchicalVAE(
        image_shape=(8, 8, 1), latent_dim=2, num_layers=2, likelihood="categorical", num_levels=L
    )
    x = jnp.zeros((1, 8, 8, 1))
    params = numpy_init(vae, x, jax.random.key(0)), numpy_init(hvae, x, jax.random.key(0))

    @jax.jit
    def draw(params, key):
        vae_key, hvae_key = jax.random.split(key)
        # mean=True is the deterministic map of sample_likelihood, tested above
        bits = sample_vae(params[0], vae_key, 6, apply_fn=vae.apply, latent_dim=2, likelihood="bernoulli", mean=False)
        levels = sample_hierarchical_vae(params[1], hvae_key, 6, apply_fn=hvae.apply, latent_dim=2, num_layers=2,
                                         likelihood="categorical", num_levels=L, mean=False)
        return bits, levels

    bits, levels = draw(params, jax.random.key(1))
    assert bits.shape == levels.shape == (6, 8, 8, 1)
    assert set(np.unique(bits)) <= {0.0, 1.0}
    assert set(np.unique(levels)) <= set(range(L))
    assert not np.array_equal(levels[0], levels[1])  # different prior draws decode differently
