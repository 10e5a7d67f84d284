"""Autoencoder objectives against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.losses.autoencoder import (
    denoising_ae_loss,
    gaussian_corruption,
    masking_corruption,
    reconstruction_loss,
    regularized_ae_loss,
)
from gmzoo.losses.vae import reconstruction_loss as contract_reconstruction_loss
from gmzoo.models.vae import TinyMLPAutoencoder

X = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4, 4, 1)), jnp.float32)
BATCH = {"image": X}


def scaled_identity(params, x):
    """A stand-in autoencoder: x_hat = gain * x, z = the first 3 pixels."""
    return params["gain"] * x, x.reshape(x.shape[0], -1)[:, :3]


def test_reconstruction_loss_is_mean_squared_norm():
    params = {"gain": 0.5}
    loss, metrics = reconstruction_loss(params, BATCH, jax.random.key(0), apply_fn=scaled_identity)
    expected = np.mean(np.sum((0.5 * np.asarray(X)) ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(metrics["mse"], expected / 16, rtol=1e-6)
    assert contract_reconstruction_loss is reconstruction_loss  # also importable from losses.vae


@pytest.mark.parametrize("penalty, omega", [("l2", np.square), ("l1", np.abs)])
def test_regularized_loss_adds_weighted_latent_penalty(penalty, omega):
    params = {"gain": 0.5}
    key = jax.random.key(0)
    recon, _ = reconstruction_loss(params, BATCH, key, apply_fn=scaled_identity)
    loss, metrics = regularized_ae_loss(params, BATCH, key, apply_fn=scaled_identity, weight=0.3, penalty=penalty)
    z = np.asarray(X).reshape(3, -1)[:, :3]
    expected_penalty = np.mean(np.sum(omega(z), axis=-1))
    np.testing.assert_allclose(metrics["penalty"], expected_penalty, rtol=1e-6)
    np.testing.assert_allclose(loss, recon + 0.3 * expected_penalty, rtol=1e-6)
    with pytest.raises(ValueError, match="penalty must be one of"):
        regularized_ae_loss(params, BATCH, key, apply_fn=scaled_identity, weight=1.0, penalty="l3")


def test_denoising_loss_and_corruptions():
    identity = {"gain": 1.0}
    key = jax.random.key(1)
    ones = jnp.ones((20_000, 4))

    @jax.jit
    def run():
        clean, _ = denoising_ae_loss(identity, BATCH, key, apply_fn=scaled_identity, noise_level=0.0)
        masked, _ = denoising_ae_loss(
            identity, BATCH, key, apply_fn=scaled_identity, corruption="masking", noise_level=0.5
        )
        x_tilde = masking_corruption(key, X, 0.5)
        return clean, masked, x_tilde, gaussian_corruption(key, ones, 0.3), masking_corruption(key, ones, 0.25)

    clean, masked_loss, x_tilde, noisy, masked = (np.asarray(a) for a in run())
    np.testing.assert_allclose(clean, 0.0)
    # An identity "denoiser" under masking: the error is the squared norm of the zeroed pixels.
    np.testing.assert_allclose(masked_loss, np.mean(np.sum((np.asarray(X) - x_tilde) ** 2, axis=(1, 2, 3))), rtol=1e-6)
    assert masked_loss > 0
    np.testing.assert_allclose(np.std(noisy - 1.0), 0.3, rtol=0.02)
    assert set(np.unique(masked)) == {0.0, 1.0}
    np.testing.assert_allclose(np.mean(masked == 0.0), 0.25, atol=0.01)


def test_tiny_autoencoder_gradients_flow(numpy_init):
    model = TinyMLPAutoencoder(image_shape=(4, 4, 1), latent_dim=2)

    @jax.jit
    def grads(params, x):
        loss = lambda p: denoising_ae_loss(  # noqa: E731
            p, {"image": x}, jax.random.key(1), apply_fn=model.apply, corruption=lambda key, x, level: 0.5 * x
        )[0]  # a user-supplied corruption function
        return jax.grad(loss)(params)

    leaves = jax.tree.leaves(grads(numpy_init(model, X), X))
    assert all(np.all(np.isfinite(g)) and np.any(np.asarray(g) != 0) for g in leaves)
