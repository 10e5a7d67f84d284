"""ELBO / IWAE / hierarchical losses on tiny models: bounds ordering, chunking, jit hygiene."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.losses.vae import elbo_loss, elbo_terms, hierarchical_elbo_loss, iwae_bound, iwae_loss
from gmzoo.models.vae import TinyHierarchicalVAE, TinyMLPVAE

IMAGE_SHAPE = (8, 8, 1)
X = jnp.asarray(np.random.default_rng(0).random((4, *IMAGE_SHAPE)) < 0.3, jnp.float32)  # binary
VAE_MODEL = TinyMLPVAE(image_shape=IMAGE_SHAPE, latent_dim=2, likelihood="bernoulli")
HVAE_MODEL = TinyHierarchicalVAE(image_shape=IMAGE_SHAPE, latent_dim=2, num_layers=3)


@pytest.fixture(scope="module")
def vae_params(numpy_init):
    return numpy_init(VAE_MODEL, X, jax.random.key(1), scale=3.0)


@pytest.fixture(scope="module")
def hvae_params(numpy_init):
    return numpy_init(HVAE_MODEL, X, jax.random.key(1), scale=2.0)


KS = (1, 8, 64)
NUM_KEYS = 256


@functools.partial(jax.jit, static_argnames="k")
def _bounds(params, k: int):
    """NUM_KEYS independent IWAE(k) estimates per example, `[NUM_KEYS, B]`, and for k = 1 also
    one-sample ELBOs: the batch is tiled NUM_KEYS times, so every copy draws its own samples
    (cheaper to compile than a vmap over keys)."""
    x = jnp.tile(X, (NUM_KEYS, 1, 1, 1))  # [NUM_KEYS * B, H, W, C]
    iwae_key, elbo_key = jax.random.split(jax.random.key(k))
    iwae = iwae_bound(params, x, iwae_key, apply_fn=VAE_MODEL.apply, likelihood="bernoulli", k=k, chunk=k)
    if k > 1:
        return iwae.reshape(NUM_KEYS, -1)
    recon, kl = elbo_terms(params, x, elbo_key, apply_fn=VAE_MODEL.apply, likelihood="bernoulli")
    return iwae.reshape(NUM_KEYS, -1), (recon - kl).reshape(NUM_KEYS, -1)


def test_elbo_le_iwae_and_iwae_increases_with_k(vae_params):
    """E[ELBO] = E[IWAE_1] <= E[IWAE_8] <= E[IWAE_64] (Burda et al. 2016, Thm 1).

    Each step must be an increase of more than 3 standard errors, so a bound that does not
    improve with k (e.g. a mean of log-weights instead of a log-mean of weights) fails. (The
    hierarchical bounds are checked against an exact log p(x) in test_linear_gaussian_bounds.)
    """
    iwae_1, elbo = (np.asarray(v, np.float64) for v in _bounds(vae_params, 1))
    diff = iwae_1 - elbo  # [K, B]: same expectation, sampled vs analytic KL
    np.testing.assert_array_less(np.abs(diff.mean(0)), 4 * diff.std(0) / np.sqrt(NUM_KEYS) + 1e-3)
    values = [iwae_1] + [np.asarray(_bounds(vae_params, k), np.float64) for k in KS[1:]]
    for lower, higher in zip(values[:-1], values[1:]):
        step = higher - lower  # [K, B]
        se = step.std(0) / np.sqrt(NUM_KEYS)
        assert np.all(step.mean(0) > 3 * se), (step.mean(0), se)


def test_iwae_does_not_depend_on_chunking_and_takes_k_5000(vae_params):
    key = jax.random.key(3)
    bound = functools.partial(iwae_bound, apply_fn=VAE_MODEL.apply, likelihood="bernoulli")

    @jax.jit
    def run(params, x):
        one_chunk = bound(params, x, key, k=5000, chunk=5000)
        # chunk=2000: a scan over 2 chunks plus a remainder of 1000, through the iwae_loss wrapper
        loss, metrics = iwae_loss(params, {"image": x}, key, apply_fn=VAE_MODEL.apply,
                                  likelihood="bernoulli", k=5000, chunk=2000)  # fmt: skip
        return one_chunk, loss, metrics

    one_chunk, loss, metrics = run(vae_params, X)
    assert one_chunk.shape == (X.shape[0],) and np.all(np.isfinite(one_chunk))
    np.testing.assert_allclose(loss, -jnp.mean(one_chunk), rtol=1e-6)
    np.testing.assert_allclose(metrics["iwae"], -loss)
    with pytest.raises(ValueError, match="k and chunk"):
        bound(vae_params, X, key, k=0)


def _trace_counted(fn):
    """jit(fn) plus a Python counter incremented each time fn is traced."""
    traces = []

    def counted(*args):
        traces.append(1)
        return fn(*args)

    return jax.jit(counted), traces


def test_vae_step_jits_once_and_matches_eager(vae_params):
    def loss(params, batch, key):
        return elbo_loss(params, batch, key, apply_fn=VAE_MODEL.apply, likelihood="bernoulli", beta=0.5)

    step, traces = _trace_counted(jax.value_and_grad(loss, has_aux=True))
    key = jax.random.key(4)
    (value, metrics), grads = step(vae_params, {"image": X}, key)
    step(vae_params, {"image": 1.0 - X}, jax.random.key(5))  # new values, same shapes
    assert len(traces) == 1
    step.lower(vae_params, {"image": X[:2]}, key)  # a new batch size traces again: the counter works
    assert len(traces) == 2

    eager_value, eager_metrics = loss(vae_params, {"image": X}, key)
    np.testing.assert_allclose(value, eager_value, rtol=1e-5)
    for name in ("elbo", "recon", "kl"):
        np.testing.assert_allclose(metrics[name], eager_metrics[name], rtol=1e-5)
    # loss = -(recon - beta kl), elbo = recon - kl
    np.testing.assert_allclose(value, -(metrics["recon"] - 0.5 * metrics["kl"]), rtol=1e-5)
    np.testing.assert_allclose(metrics["elbo"], metrics["recon"] - metrics["kl"], rtol=1e-5)
    leaves = jax.tree.leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert all(np.any(np.asarray(g) != 0) for g in leaves)  # every parameter gets a gradient


def test_hierarchical_step_jits_once(hvae_params):
    def loss(params, batch, key):
        return hierarchical_elbo_loss(params, batch, key, apply_fn=HVAE_MODEL.apply, likelihood="bernoulli")

    step, traces = _trace_counted(jax.value_and_grad(loss, has_aux=True))
    key = jax.random.key(6)
    (value, metrics), grads = step(hvae_params, {"image": X}, key)
    step(hvae_params, {"image": 1.0 - X}, key)
    assert len(traces) == 1
    assert {"elbo", "recon", "kl", "kl_1", "kl_2", "kl_3"} == set(metrics)
    np.testing.assert_allclose(metrics["kl"], metrics["kl_1"] + metrics["kl_2"] + metrics["kl_3"], rtol=1e-5)
    leaves = jax.tree.leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in leaves) and all(np.any(np.asarray(g) != 0) for g in leaves)


def test_elbo_loss_with_each_likelihood_is_finite(numpy_init):
    """Every decoder head plugs into the loss with data in its range."""
    x01 = X
    cases = {
        "bernoulli": (x01, None),
        "gaussian": (2.0 * x01 - 1.0, None),
        "discretized_logistic": (2.0 * x01 - 1.0, 17),
        "categorical": (16.0 * x01, 17),
    }

    models = {
        name: TinyMLPVAE(image_shape=IMAGE_SHAPE, latent_dim=2, likelihood=name, num_levels=num_levels or 2)
        for name, (_, num_levels) in cases.items()
    }  # fmt: skip
    params = {name: numpy_init(model, X, jax.random.key(1)) for name, model in models.items()}

    @jax.jit
    def run(params):
        return {
            name: elbo_loss(params[name], {"image": x}, jax.random.key(2), apply_fn=models[name].apply,
                            likelihood=name, num_levels=num_levels)
            for name, (x, num_levels) in cases.items()
        }  # fmt: skip

    for name, (value, metrics) in run(params).items():
        assert np.isfinite(value) and metrics["kl"] >= 0, name
