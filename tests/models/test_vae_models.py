"""Shapes, init and configuration errors of the autoencoder / VAE / hierarchical VAE variants.

Shapes come from `jax.eval_shape` (tracing only, no XLA compile), so every variant at 8x8 and
28x28 is checked in well under a second; one jitted forward per architecture checks numbers.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.models.vae import (
    ConvAutoencoder,
    ConvHierarchicalVAE,
    ConvVAE,
    HierarchicalVAE,
    MLPAutoencoder,
    MLPHierarchicalVAE,
    MLPVAE,
    TinyConvAutoencoder,
    TinyConvVAE,
    TinyHierarchicalVAE,
    TinyMLPAutoencoder,
    TinyMLPVAE,
    VAE,
    validate_image_shape,
)
from gmzoo.nn.heads import likelihood_params

SHAPES = [(8, 8, 1), (28, 28, 1)]
LIKELIHOOD_OUTPUTS = {  # decoder output shapes for a batch of B=2 images of shape S, L=5 levels
    "bernoulli": lambda s: (2, *s),
    "gaussian": lambda s: ((2, *s), (2, *s)),
    "discretized_logistic": lambda s: ((2, *s), (2, *s)),
    "categorical": lambda s: (2, *s, 5),
}
KEY = jax.random.key(0)


def _shapes(tree):
    return jax.tree.map(lambda a: tuple(a.shape), tree)


def _abstract_forward(model, shape, *, with_key=True):
    x = jax.ShapeDtypeStruct((2, *shape), jnp.float32)
    args = (x, KEY) if with_key else (x,)
    params = jax.eval_shape(model.init, KEY, *args)
    return params, jax.eval_shape(model.apply, params, *args)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("variant", [TinyMLPVAE, TinyConvVAE, MLPVAE, ConvVAE])
@pytest.mark.parametrize("likelihood", list(LIKELIHOOD_OUTPUTS))
def test_vae_output_shapes(variant, shape, likelihood):
    model = variant(image_shape=shape, latent_dim=3, likelihood=likelihood, num_levels=5)
    _, (decoder_output, mean, log_var) = _abstract_forward(model, shape)
    assert _shapes(decoder_output) == LIKELIHOOD_OUTPUTS[likelihood](shape)
    assert mean.shape == log_var.shape == (2, 3)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("variant", [TinyMLPAutoencoder, TinyConvAutoencoder, MLPAutoencoder, ConvAutoencoder])
def test_autoencoder_output_shapes(variant, shape):
    _, (x_hat, z) = _abstract_forward(variant(image_shape=shape, latent_dim=4), shape, with_key=False)
    assert x_hat.shape == (2, *shape) and z.shape == (2, 4)


@pytest.mark.parametrize("num_layers", [2, 3])
@pytest.mark.parametrize("variant", [TinyHierarchicalVAE, MLPHierarchicalVAE, ConvHierarchicalVAE])
def test_hierarchical_vae_output_shapes(variant, num_layers):
    shape = (28, 28, 1)
    model = variant(image_shape=shape, latent_dim=3, num_layers=num_layers)
    params, (logits, zs, posteriors, priors) = _abstract_forward(model, shape)
    assert logits.shape == (2, *shape)
    assert _shapes(zs) == ((2, 3),) * num_layers
    assert _shapes(posteriors) == _shapes(priors) == (((2, 3), (2, 3)),) * num_layers
    # one inference and one generative network per link z_t <-> z_{t+1}
    assert sorted(k for k in params["params"] if k.startswith(("up_", "down_"))) == sorted(
        [f"up_{i}" for i in range(num_layers - 1)] + [f"down_{i}" for i in range(num_layers - 1)]
    )


def test_variant_sizes_are_distinct():
    """Tiny variants are tiny; the full ones are what their names say."""

    def count(model, shape=(28, 28, 1), **kw):
        params, _ = _abstract_forward(model, shape, **kw)
        return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))

    assert count(TinyMLPVAE(image_shape=(8, 8, 1), latent_dim=2), (8, 8, 1)) < 5_000
    assert count(TinyConvVAE(image_shape=(8, 8, 1), latent_dim=2), (8, 8, 1)) < 5_000
    assert count(MLPVAE(image_shape=(28, 28, 1), latent_dim=16)) > 500_000
    assert 20_000 < count(ConvVAE(image_shape=(28, 28, 1), latent_dim=16)) < 500_000


@pytest.mark.parametrize(
    "model",
    [
        TinyConvVAE(image_shape=(8, 8, 1), latent_dim=2, likelihood="discretized_logistic"),
        TinyHierarchicalVAE(image_shape=(8, 8, 1), latent_dim=2, likelihood="categorical", num_levels=4),
    ],
    ids=["conv_vae", "hierarchical_vae"],
)
def test_jitted_forward_is_finite_and_deterministic(model, numpy_init):
    """Numbers through the real layers (params drawn in numpy: a compiled Flax initialiser
    costs seconds of XLA compile on CPU; `init` itself is traced in the shape tests)."""
    x = jnp.linspace(-1.0, 1.0, 2 * 64).reshape(2, 8, 8, 1)
    params = numpy_init(model, x, KEY)

    forward = jax.jit(model.apply)
    out, out_other_key = forward(params, x, KEY), forward(params, x, jax.random.key(1))
    assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(out))
    again = forward(params, x, KEY)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(again)))
    # the latent draw depends on the key
    assert not np.array_equal(jax.tree.leaves(out)[0], jax.tree.leaves(out_other_key)[0])


def test_conv_shape_errors_are_one_line_and_say_what_is_allowed():
    with pytest.raises(ValueError, match=r"divisible by 4 .*got 10x10") as info:
        ConvVAE(image_shape=(10, 10, 1), latent_dim=2)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="divisible by 8"):
        validate_image_shape((28, 28, 1), architecture="conv", hidden=(8, 16, 32))
    validate_image_shape((28, 28, 1), architecture="conv", hidden=(32, 64))  # no error
    validate_image_shape((10, 10, 1), architecture="mlp")  # an MLP takes any (H, W, C)
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        MLPVAE(image_shape=(28, 28), latent_dim=2)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: VAE(image_shape=(8, 8, 1), latent_dim=2, likelihood="poisson"), "likelihood must be one of"),
        (lambda: VAE(image_shape=(8, 8, 1), latent_dim=2, likelihood="categorical", num_levels=1), "num_levels >= 2"),
        (lambda: VAE(image_shape=(8, 8, 1), latent_dim=2, architecture="resnet"), "architecture must be one of"),
        (lambda: VAE(image_shape=(8, 8, 1), latent_dim=0), "latent_dim must be a positive"),
        (lambda: HierarchicalVAE(image_shape=(8, 8, 1), latent_dim=2, num_layers=1), "num_layers >= 2"),
    ],
)
def test_bad_configurations_raise_at_construction(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_log_scale_is_bounded_below():
    raw = jnp.stack([jnp.zeros(5), jnp.array([-1e4, -50.0, -7.0, 0.0, 3.0])], axis=-1)  # [5, 2]
    _, log_scale = likelihood_params(raw[:, None, None, None, :], "gaussian", min_log_scale=-4.0)
    log_scale = np.asarray(log_scale).ravel()
    assert np.all(log_scale >= -4.0) and np.all(np.diff(log_scale) >= 0)  # monotone
    np.testing.assert_allclose(log_scale[-1], 3.0, atol=1e-3)  # identity well above the floor
