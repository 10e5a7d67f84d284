"""The hand-written backward pass of the stride-2 transposed convolution equals autodiff's."""

import jax
import jax.numpy as jnp
import numpy as np

from gmzoo.nn.conv import _conv_stride2, conv_transpose_stride2


def test_is_the_adjoint_of_the_strided_conv_and_gradients_match_autodiff():
    kh, kk, kg, ky = jax.random.split(jax.random.key(0), 4)
    h = jax.random.normal(kh, (2, 4, 3, 5))  # [B, H, W, C]
    kernel = jax.random.normal(kk, (3, 3, 6, 5))  # [3, 3, C_up, C]
    g = jax.random.normal(kg, (2, 8, 6, 6))
    y = jax.random.normal(ky, (2, 8, 6, 6))
    out = conv_transpose_stride2(h, kernel)
    assert out.shape == (2, 8, 6, 6)
    # <S^T h, y> == <h, S y>
    np.testing.assert_allclose(jnp.vdot(out, y), jnp.vdot(h, _conv_stride2(y, kernel)), rtol=1e-5)

    def reference(h, kernel):  # plain autodiff through linear_transpose
        y0 = jnp.zeros((2, 8, 6, 6))
        return jax.linear_transpose(lambda y: _conv_stride2(y, kernel), y0)(h)[0]

    loss = lambda f: (lambda h, k: jnp.sum(jnp.sin(f(h, k)) * g))
    got = jax.grad(loss(conv_transpose_stride2), argnums=(0, 1))(h, kernel)
    want = jax.grad(loss(reference), argnums=(0, 1))(h, kernel)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
