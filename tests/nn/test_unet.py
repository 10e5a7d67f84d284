"""U-Net, time MLP, noise classifier and their blocks: shapes, conditioning, init, closed forms.

Shapes come from `jax.eval_shape` (tracing only); numbers use numpy-drawn params (the
`numpy_init` fixture) so that no compiled initialiser runs, except in the zero-init test, which
must run the module's own initialisers (with the cheap-to-compile "unsafe_rbg" PRNG).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.models.diffusion import NoiseClassifier, TinyNoiseClassifier
from gmzoo.nn.tree import param_count
from gmzoo.nn.attention import SelfAttention2D
from gmzoo.nn.embeddings import sinusoidal_embedding
from gmzoo.nn.normalization import GroupNorm
from gmzoo.nn.time_mlp import TimeMLP, TinyTimeMLP
from gmzoo.nn.unet import MediumUNet, SmallUNet, TinyUNet, UNet, unet_shape_error

pytestmark = pytest.mark.optimized  # real compute: full XLA optimisation (tests/conftest.py)

KEY = jax.random.key(0)
T = jnp.array([0.0, 999.0])  # [B] timesteps


def _sds(*shape, dtype=jnp.float32):
    return jax.ShapeDtypeStruct(shape, dtype)


def _abstract(model, *args):
    params = jax.eval_shape(model.init, KEY, *args)
    return params, jax.eval_shape(model.apply, params, *args)


@pytest.fixture(scope="module")
def conditional(numpy_init):
    """TinyUNet with 3 classes and a 2-channel cond input, numpy params (all non-zero)."""
    model = TinyUNet(num_classes=3)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 8, 8, 1)), jnp.float32)
    cond = jnp.asarray(np.random.default_rng(1).normal(size=(3, 8, 8, 2)), jnp.float32)
    y = jnp.array([0, 1, 3])  # 3 = the "no label" row
    params = numpy_init(model, x, jnp.full((3,), 10.0), y, cond)
    return model, params, x, cond, y


@pytest.mark.parametrize("shape", [(8, 8, 1), (28, 28, 1), (8, 8, 3)])
@pytest.mark.parametrize("num_classes", [0, 10])
def test_unet_output_shape(shape, num_classes):
    x = _sds(2, *shape)
    y = _sds(2, dtype=jnp.int32) if num_classes else None
    _, out = _abstract(TinyUNet(num_classes=num_classes), x, _sds(2), y)
    assert out.shape == (2, *shape) and out.dtype == jnp.float32


def test_unet_out_channels_cond_and_variants():
    x, cond = _sds(2, 8, 8, 1), _sds(2, 8, 8, 2)
    params, out = _abstract(TinyUNet(out_channels=2), x, _sds(2), None, cond)
    assert out.shape == (2, 8, 8, 2)
    assert params["params"]["conv_in"]["kernel"].shape == (3, 3, 3, 8)  # 1 + 2 input channels
    # The benchmark networks: attention where asked, the advertised parameter counts.
    small, _ = _abstract(SmallUNet(), x, _sds(2))
    medium, _ = _abstract(MediumUNet(), x, _sds(2))
    assert {"down_1_attn_0", "mid_attn", "up_1_attn_1"} <= set(small["params"])
    assert {"down_2_attn_1", "mid_attn", "up_2_attn_2", "up_1_attn_0"} <= set(medium["params"])
    assert round(param_count(small), -3) == 177_000 and round(param_count(medium), -3) == 430_000


def test_unet_refuses_bad_shapes_and_configs():
    assert unet_shape_error((8, 8, 1), (1, 2, 2)) is None
    assert unet_shape_error((28, 28, 1), (1, 2)) is None
    message = unet_shape_error((28, 28, 1), (1, 2, 2, 2))
    assert "divisible by 8" in message and "28x28" in message
    with pytest.raises(ValueError, match="divisible by 2; got 7x8"):
        jax.eval_shape(TinyUNet().init, KEY, _sds(1, 7, 8, 1), _sds(1))
    with pytest.raises(ValueError, match="num_groups=8 must divide"):
        UNet(base_channels=12)
    with pytest.raises(ValueError, match="num_heads=3 must divide"):
        UNet(base_channels=16, num_heads=3)
    with pytest.raises(ValueError, match="num_classes=0"):
        jax.eval_shape(TinyUNet().init, KEY, _sds(2, 8, 8, 1), _sds(2), _sds(2, dtype=jnp.int32))
    with pytest.raises(ValueError, match="cond must be"):
        jax.eval_shape(TinyUNet().init, KEY, _sds(2, 8, 8, 1), _sds(2), None, _sds(2, 4, 4, 1))


def test_unet_output_is_exactly_zero_at_init():
    model = TinyUNet(num_classes=3)
    x = jax.random.normal(KEY, (2, 8, 8, 1))
    key = jax.random.key(0, impl="unsafe_rbg")
    out, params = jax.jit(model.init_with_output)(key, x, T, jnp.array([0, 1]))
    assert np.all(np.asarray(out) == 0.0)
    assert np.any(np.asarray(params["params"]["conv_in"]["kernel"]) != 0)  # not all params zero


def test_unet_labels_and_cond_change_the_output_and_jit_agrees(conditional):
    model, params, x, cond, y = conditional
    # Three copies of one (image, cond) pair, labels 0, 1, 3 (= null).
    x, cond = jnp.broadcast_to(x[:1], x.shape), jnp.broadcast_to(cond[:1], cond.shape)
    t = jnp.full((3,), 10.0)
    apply = jax.jit(model.apply)
    out = np.asarray(apply(params, x, t, y, cond))
    assert np.all(np.isfinite(out))
    assert not np.allclose(out[0], out[1], atol=1e-4)  # labels 0 and 1 differ
    null = np.asarray(apply(params, x, t, None, cond))  # y=None is the "no label" row
    np.testing.assert_allclose(null, np.broadcast_to(out[2], null.shape), rtol=1e-5, atol=1e-6)
    moved = np.asarray(apply(params, x, t, y, cond + 1.0))
    assert not np.allclose(moved, out, atol=1e-4)  # cond enters
    later = np.asarray(apply(params, x, t + 500.0, y, cond))
    assert not np.allclose(later, out, atol=1e-4)  # t enters
    eager = np.asarray(model.apply(params, x, t, y, cond))
    np.testing.assert_allclose(eager, out, rtol=1e-4, atol=1e-5)


def test_sinusoidal_embedding_matches_the_ddpm_formula():
    t = np.array([0.0, 1.0, 17.0, 999.0])
    for dim in (6, 7, 32):
        half = dim // 2
        freqs = np.array([10000.0 ** (-i / (half - 1)) for i in range(half)])
        want = np.zeros((4, dim))
        for b in range(4):
            for i in range(half):
                want[b, i], want[b, half + i] = math.sin(t[b] * freqs[i]), math.cos(t[b] * freqs[i])
        got = np.asarray(sinusoidal_embedding(jnp.asarray(t), dim))
        assert got.shape == (4, dim)
        np.testing.assert_allclose(got, want, atol=2e-4)  # float32 sin of 999


def test_group_norm_matches_the_formula():
    rng = np.random.default_rng(5)
    x = rng.normal(loc=3.0, scale=2.0, size=(2, 4, 3, 12))  # [B, H, W, C], far from zero mean
    scale, bias = rng.normal(size=12), rng.normal(size=12)
    params = {"params": {"scale": jnp.asarray(scale, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}}
    got = np.asarray(GroupNorm(num_groups=3).apply(params, jnp.asarray(x, jnp.float32)))
    g = x.reshape(2, 12, 3, 4)  # groups of 4 consecutive channels
    want = ((g - g.mean(axis=(1, 3), keepdims=True)) / np.sqrt(g.var(axis=(1, 3), keepdims=True) + 1e-6))
    np.testing.assert_allclose(got, want.reshape(x.shape) * scale + bias, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="num_groups=5 must divide the 12 channels"):
        GroupNorm(num_groups=5).apply(params, jnp.asarray(x, jnp.float32))


def _attention_numpy(x, p, num_heads, num_groups, eps=1e-6):
    """GroupNorm -> multi-head softmax attention -> proj_out, plus the residual, in float64."""
    b, h, w, c = x.shape
    g = x.reshape(b, h * w, num_groups, c // num_groups)
    g = (g - g.mean(axis=(1, 3), keepdims=True)) / np.sqrt(g.var(axis=(1, 3), keepdims=True) + eps)
    n = g.reshape(b, h * w, c) * p["norm"]["scale"] + p["norm"]["bias"]
    qkv = n @ p["qkv"]["kernel"] + p["qkv"]["bias"]  # [B, N, 3C]
    d = c // num_heads
    out = np.zeros((b, h * w, c))
    for i in range(b):
        for head in range(num_heads):
            q, k, v = (qkv[i, :, j * c + head * d: j * c + (head + 1) * d] for j in range(3))
            logits = q @ k.T / np.sqrt(d)
            a = np.exp(logits - logits.max(-1, keepdims=True))
            out[i, :, head * d:(head + 1) * d] = (a / a.sum(-1, keepdims=True)) @ v
    out = out @ p["proj_out"]["kernel"] + p["proj_out"]["bias"]
    return x + out.reshape(b, h, w, c)


def test_attention_matches_numpy_and_is_permutation_equivariant(numpy_init):
    block = SelfAttention2D(num_heads=2, num_groups=2, zero_init=False)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 4, 3, 8)).astype(np.float32)  # [B, H, W, C]
    params = numpy_init(block, x, scale=2.0)
    apply = jax.jit(block.apply)
    out = np.asarray(apply(params, x))
    p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    want = _attention_numpy(x.astype(np.float64), p64, num_heads=2, num_groups=2)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
    assert not np.allclose(out, x, atol=1e-2)  # the block does something
    perm = rng.permutation(12)
    shuffle = lambda a: a.reshape(2, 12, 8)[:, perm].reshape(2, 4, 3, 8)  # noqa: E731
    np.testing.assert_allclose(np.asarray(apply(params, shuffle(x))), shuffle(out), rtol=1e-5, atol=1e-5)


def test_time_mlp_shapes_labels_and_cond(numpy_init):
    x, t = _sds(5, 2), _sds(5)
    assert _abstract(TimeMLP(), x, t)[1].shape == (5, 2)
    params, out = _abstract(TinyTimeMLP(num_classes=4, out_dim=3), x, t, _sds(5, dtype=jnp.int32), _sds(5, 6))
    assert out.shape == (5, 3) and params["params"]["dense_0"]["kernel"].shape == (8, 16)
    assert params["params"]["time_embed"]["class_embed"]["embedding"].shape == (5, 16)
    with pytest.raises(ValueError, match=r"vectors \[B, D\]"):
        jax.eval_shape(TimeMLP().init, KEY, _sds(5, 2, 2), t)

    model = TinyTimeMLP(num_classes=4)
    xv = jnp.asarray(np.random.default_rng(4).normal(size=(2, 2)), jnp.float32)
    params = numpy_init(model, xv, jnp.ones(2), jnp.array([0, 1]))
    out = model.apply(params, xv, jnp.ones(2), jnp.array([0, 0]))
    other = model.apply(params, xv, jnp.ones(2), jnp.array([3, 3]))
    assert out.shape == (2, 2) and not np.allclose(out, other, atol=1e-4)
    null = model.apply(params, xv, jnp.ones(2), jnp.array([4, 4]))  # row 4 = "no label"
    np.testing.assert_allclose(model.apply(params, xv, jnp.ones(2)), null)


def test_noise_classifier_shapes_and_refusal():
    params, logits = _abstract(TinyNoiseClassifier(num_classes=10), _sds(4, 28, 28, 1), _sds(4))
    assert logits.shape == (4, 10)
    assert NoiseClassifier(num_classes=10).channel_mults == (1, 2) and param_count(params) > 0
    with pytest.raises(ValueError, match="NoiseClassifier"):
        jax.eval_shape(TinyNoiseClassifier().init, KEY, _sds(1, 9, 9, 1), _sds(1))
