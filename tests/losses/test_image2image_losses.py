"""The image-to-image reconstruction terms against direct numpy computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.losses import image2image as i2i


def _images(seed, shape=(3, 4, 5, 2)):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_l1_and_mse_are_elementwise_means():
    x, y = _images(0), _images(1)
    np.testing.assert_allclose(i2i.l1_loss(x, y), np.mean(np.abs(x - y)), rtol=1e-6)
    np.testing.assert_allclose(i2i.mse_loss(x, y), np.mean((x - y) ** 2), rtol=1e-6)
    assert float(i2i.l1_loss(x, x)) == 0.0


def test_bfloat16_inputs_are_promoted():
    x, y = _images(0), _images(1)
    out = i2i.l1_loss(jnp.asarray(x, jnp.bfloat16), jnp.asarray(y, jnp.bfloat16))
    assert out.dtype == jnp.float32


def test_content_loss_sums_layers():
    f = {"a": _images(2), "b": _images(3, (3, 7))}
    g = {"a": _images(4), "b": _images(5, (3, 7))}
    want = np.mean((f["a"] - g["a"]) ** 2) + np.mean((f["b"] - g["b"]) ** 2)
    np.testing.assert_allclose(i2i.content_loss(f, g), want, rtol=1e-6)
    with pytest.raises(ValueError, match="one structure"):
        i2i.content_loss(f, {"a": g["a"]})


def test_cycle_and_identity_losses():
    a, b, ac, bc = (_images(s) for s in range(4))
    np.testing.assert_allclose(i2i.cycle_consistency_loss(a, ac, b, bc),
                               np.mean(np.abs(ac - a)) + np.mean(np.abs(bc - b)), rtol=1e-6)
    # an exact inverse pair (G = negation, F = negation) has zero cycle loss
    g = f = lambda x: -x
    assert float(i2i.cycle_consistency_loss(a, f(g(a)), b, g(f(b)))) == 0.0
    np.testing.assert_allclose(i2i.identity_loss(a, ac, b, bc),
                               np.mean(np.abs(bc - b)) + np.mean(np.abs(ac - a)), rtol=1e-6)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="one shape"):
        i2i.l1_loss(_images(0), _images(1, (3, 4, 5, 1)))


def test_gradient_of_l1_is_sign():
    x, y = _images(0), _images(1)
    grad = jax.grad(i2i.l1_loss)(x, y)
    np.testing.assert_allclose(grad, np.sign(x - y) / x.size, rtol=1e-6)
