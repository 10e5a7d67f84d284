"""Image-to-image tasks: inpaint masks, invert, Sobel edges, box downsample, bicubic, domains."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from gmzoo.data import paired as P
from gmzoo.data import transforms as T
from gmzoo.data.embedded import load_digits


def _images(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape), jnp.float32)


def _smooth(h, w, batch=2, channels=1):
    """Low-frequency images in [-0.8, 0.8]: [batch, h, w, channels]."""
    y, x = np.meshgrid(np.arange(h) / h, np.arange(w) / w, indexing="ij")
    out = [
        0.8 * np.sin(2.0 * y + 0.5 * b + 0.3 * c) * np.cos(1.5 * x - 0.2 * b)
        for b in range(batch)
        for c in range(channels)
    ]
    return jnp.asarray(np.stack(out).reshape(batch, channels, h, w).transpose(0, 2, 3, 1))


def _keys_weights(n_in, factor, a=-0.5):
    """Numpy reference: [n_out, n_in] Keys cubic weights, half-pixel centres, renormalised."""
    sample = (np.arange(n_in * factor) + 0.5) / factor - 0.5  # [n_out] input coordinates
    t = np.abs(sample[:, None] - np.arange(n_in))  # [n_out, n_in]
    w = np.where(
        t <= 1,
        (a + 2) * t**3 - (a + 3) * t**2 + 1,
        np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0),
    )
    return w / w.sum(1, keepdims=True)


# ---- inpaint ----------------------------------------------------------------------------------


def test_inpaint_mask_is_one_square_with_uniform_position():
    b = 5000
    src, tgt = P.make_pair("inpaint", jnp.zeros((b, 8, 8, 1)), jax.random.key(0))
    assert src.shape == (b, 8, 8, 2) and tgt.shape == (b, 8, 8, 1)
    mask = np.asarray(src[..., -1])  # [B, 8, 8]
    assert set(np.unique(mask)) == {0.0, 1.0}
    side = P.mask_side(8, 8, P.PairConfig().mask_fraction)
    assert side == 4
    np.testing.assert_array_equal(mask.sum((1, 2)), side * side)  # exactly s*s pixels ...
    rows, cols = mask.any(2), mask.any(1)  # [B, 8]
    np.testing.assert_array_equal(rows.sum(1), side)  # ... spanning s rows and s columns: a square
    np.testing.assert_array_equal(cols.sum(1), side)
    y0, x0 = rows.argmax(1), cols.argmax(1)
    freq = np.bincount(y0 * 5 + x0, minlength=25) / b  # 5 x 5 possible top-left corners
    assert freq.shape == (25,) and y0.max() == 4 and x0.max() == 4
    np.testing.assert_allclose(freq, 1 / 25, atol=0.012)  # uniform (3.5 sigma ~ 0.0097)


@pytest.mark.parametrize("channels", [1, 3])
def test_inpaint_keeps_unmasked_pixels(channels):
    x = _images((64, 28, 28, channels))
    config = P.PairConfig(mask_fraction=0.3)
    src, tgt = P.make_pair("inpaint", x, jax.random.key(1), config)
    assert src.shape[-1] == P.source_channels("inpaint", channels) == channels + 1
    hole = np.asarray(src[..., -1:]) > 0  # [B, H, W, 1]
    assert P.mask_side(28, 28, 0.3) == 8
    np.testing.assert_array_equal(hole.sum((1, 2, 3)), 8 * 8)
    np.testing.assert_array_equal(tgt, x)
    hole_c = np.broadcast_to(hole, x.shape)
    np.testing.assert_array_equal(np.asarray(src[..., :channels])[~hole_c], np.asarray(x)[~hole_c])
    np.testing.assert_array_equal(np.asarray(src[..., :channels])[hole_c], -1.0)


def test_inpaint_is_deterministic_given_key_and_fraction_one_masks_all():
    x = _images((16, 8, 8, 1))
    a, _ = P.make_pair("inpaint", x, jax.random.key(5))
    b, _ = P.make_pair("inpaint", x, jax.random.key(5))
    c, _ = P.make_pair("inpaint", x, jax.random.key(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    full, _ = P.make_pair("inpaint", x, jax.random.key(0), P.PairConfig(mask_fraction=1.0))
    np.testing.assert_array_equal(full[..., 0], -1.0)
    np.testing.assert_array_equal(full[..., 1], 1.0)


# ---- invert, edges, denoise -------------------------------------------------------------------


def test_invert_is_an_involution():
    x = _images((4, 8, 8, 3))
    src, tgt = P.make_pair("invert", x, jax.random.key(0))
    np.testing.assert_array_equal(src, -x)
    np.testing.assert_array_equal(tgt, x)
    np.testing.assert_array_equal(P.make_pair("invert", src, jax.random.key(9))[0], x)


@pytest.mark.parametrize("value", [-1.0, 0.0, 0.37, 1.0])
def test_edges_of_constant_image_are_empty(value):
    src, _ = P.make_pair("edges", jnp.full((2, 8, 8, 3), value), jax.random.key(0))
    assert src.shape == (2, 8, 8, 1) == (2, 8, 8, P.source_channels("edges", 3))
    np.testing.assert_array_equal(src, -1.0)  # borders included (edge replication)
    np.testing.assert_array_equal(P.sobel_magnitude(jnp.full((1, 5, 7, 1), value)), 0.0)


def test_edges_of_a_step_lie_on_the_step():
    x = np.full((1, 8, 8, 1), -1.0, np.float32)
    x[:, :, 5:] = 1.0  # vertical step between columns 4 and 5
    mag = np.asarray(P.sobel_magnitude(jnp.asarray(x)))[0, :, :, 0]
    np.testing.assert_allclose(mag[:, [4, 5]], 1.0, atol=1e-6)  # jump 2 -> 2 / 2 beside it
    np.testing.assert_array_equal(np.delete(mag, [4, 5], axis=1), 0.0)
    src, _ = P.make_pair("edges", jnp.asarray(x), jax.random.key(0))
    expected = np.full((8, 8), -1.0)
    expected[:, [4, 5]] = 1.0
    np.testing.assert_array_equal(src[0, :, :, 0], expected)
    src_t, _ = P.make_pair("edges", jnp.asarray(x.transpose(0, 2, 1, 3)), jax.random.key(0))
    np.testing.assert_array_equal(src_t[0, :, :, 0], expected.T)  # horizontal step: rows 4, 5
    low, _ = P.make_pair("edges", jnp.asarray(x) * 0.4, None, P.PairConfig(edge_threshold=0.5))
    np.testing.assert_array_equal(low, -1.0)  # a jump of 0.8 gives 0.4 < threshold


def test_sobel_of_a_ramp_is_its_slope():
    y, x = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    ramp = jnp.asarray((0.1 * x + 0.05 * y)[None, :, :, None], jnp.float32)
    mag = np.asarray(P.sobel_magnitude(ramp))[0, 1:-1, 1:-1, 0]  # interior (border is one-sided)
    np.testing.assert_allclose(mag, np.hypot(0.1, 0.05), atol=1e-6)


def test_denoise_adds_clipped_noise_of_the_configured_scale():
    x = jnp.zeros((32, 28, 28, 1))
    src, tgt = P.make_pair("denoise", x, jax.random.key(2), P.PairConfig(noise_std=0.1))
    np.testing.assert_array_equal(tgt, x)
    assert float(jnp.std(src)) == pytest.approx(0.1, rel=0.03)
    loud, _ = P.make_pair("denoise", x, jax.random.key(2), P.PairConfig(noise_std=3.0))
    assert float(loud.min()) == -1.0 and float(loud.max()) == 1.0  # clipped to [-1, 1]
    again, _ = P.make_pair("denoise", x, jax.random.key(2), P.PairConfig(noise_std=0.1))
    np.testing.assert_array_equal(src, again)


def test_bad_tasks_and_inputs():
    x = jnp.zeros((2, 8, 8, 1))
    with pytest.raises(ValueError, match=r"unknown paired task 'colorize'; allowed: inpaint, inv"):
        P.make_pair("colorize", x, jax.random.key(0))
    with pytest.raises(ValueError, match="unknown paired task"):
        P.source_channels("colorize", 1)
    with pytest.raises(ValueError, match=r"must be float in \[-1, 1\].*uint8"):
        P.make_pair("invert", jnp.zeros((2, 8, 8, 1), jnp.uint8), jax.random.key(0))
    with pytest.raises(ValueError, match=r"\[B, H, W, C\], got shape \(8, 8\)"):
        P.make_pair("edges", jnp.zeros((8, 8)), jax.random.key(0))
    with pytest.raises(ValueError, match=r"mask_fraction must be in \(0, 1\], got 1.5"):
        P.PairConfig(mask_fraction=1.5)
    with pytest.raises(ValueError, match="noise_std must be >= 0"):
        P.PairConfig(noise_std=-0.1)


# ---- super-resolution -------------------------------------------------------------------------


def test_downsample_is_the_exact_block_mean():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(P.downsample(x, 2)[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_array_equal(P.downsample(x, 4)[0, :, :, 0], [[7.5]])
    np.testing.assert_array_equal(P.downsample(x, 1), x)
    r = np.random.default_rng(3).uniform(-1, 1, (3, 28, 28, 2)).astype(np.float32)
    for f in (2, 4, 7, 14):
        ref = r.reshape(3, 28 // f, f, 28 // f, f, 2).mean((2, 4))
        np.testing.assert_allclose(P.downsample(jnp.asarray(r), f), ref, atol=1e-6)
    ref = np.zeros((14, 14))  # the loop over 2 x 2 blocks, as in the definition
    for i in range(14):
        for j in range(14):
            ref[i, j] = r[0, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2, 1].mean()
    np.testing.assert_allclose(P.downsample(jnp.asarray(r), 2)[0, :, :, 1], ref, atol=1e-6)


@pytest.mark.parametrize("value", [-1.0, 0.25, 1.0])
def test_constant_image_survives_down_and_up(value):
    x = jnp.full((2, 8, 8, 1), value)
    np.testing.assert_allclose(P.downsample(x, 2), value, atol=1e-6)
    np.testing.assert_allclose(P.downsample(x, 8), value, atol=1e-6)
    np.testing.assert_allclose(P.bicubic_upsample(x, 4), value, atol=1e-6)  # weights sum to 1


def test_downsample_and_upsample_refuse_bad_factors():
    x = jnp.zeros((1, 8, 8, 1))
    with pytest.raises(ValueError, match=r"factor 3 must divide the image size 8x8; allowed f"):
        P.downsample(x, 3)
    with pytest.raises(ValueError, match=r"allowed factors: 1, 2, 7, 14$"):
        P.downsample(jnp.zeros((1, 28, 14, 1)), 4)
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="factor must be an int >= 1"):
            P.downsample(x, bad)
        with pytest.raises(ValueError, match="factor must be an int >= 1"):
            P.bicubic_upsample(x, bad)


def test_bicubic_matches_a_keys_cubic_reference():
    x = np.asarray(_images((2, 7, 5, 3), seed=4))
    up = P.bicubic_upsample(jnp.asarray(x), 3)
    assert up.shape == (2, 21, 15, 3)
    wy, wx = _keys_weights(7, 3), _keys_weights(5, 3)  # [21, 7], [15, 5]
    ref = np.einsum("oh,bhwc,pw->bopc", wy, x, wx)
    np.testing.assert_allclose(up, ref, atol=1e-5)
    assert float(jnp.abs(up).max()) > 1.0  # unclipped: Keys' negative lobes overshoot


def test_bicubic_is_close_to_scipy_zoom_on_smooth_images_only():
    """scipy's order-3 zoom is a cubic B-spline interpolant, not Keys' a = -0.5 convolution: the
    two agree to ~1e-2 on smooth images (grid_mode=True is the half-pixel convention) and differ
    by up to ~0.17 on sharp digit strokes."""
    x = np.asarray(_smooth(8, 8, batch=1))[0, :, :, 0]
    ours = np.asarray(P.bicubic_upsample(jnp.asarray(x)[None, :, :, None], 2))[0, :, :, 0]
    theirs = scipy.ndimage.zoom(x.astype(np.float64), 2, order=3, grid_mode=True, mode="reflect")
    assert np.abs(ours - theirs).max() < 0.02
    assert np.abs(ours - theirs)[2:-2, 2:-2].max() < 0.01  # the border rules differ most


@pytest.mark.parametrize(("size", "factor"), [(8, 2), (28, 2), (28, 4)])
def test_downsample_of_bicubic_upsample_is_close_to_identity(size, factor):
    x = _smooth(size, size, batch=3, channels=2)
    back = P.downsample(P.bicubic_upsample(x, factor), factor)
    assert back.shape == x.shape
    assert float(jnp.abs(back - x).max()) < 0.02
    rough = _images((3, size, size, 2))  # white noise is not reproduced: the test can fail
    rough_back = P.downsample(P.bicubic_upsample(rough, factor), factor)
    assert float(jnp.abs(rough_back - rough).max()) > 0.05


# ---- unpaired domains -------------------------------------------------------------------------


def test_unpaired_halves_are_disjoint():
    n = 11
    ids = jnp.arange(n, dtype=jnp.float32)[:, None, None, None] / n  # image i is constant i / n
    images = jnp.broadcast_to(ids, (n, 4, 4, 1)) * jnp.ones((n, 4, 4, 1))
    labels = jnp.arange(n, dtype=jnp.int32)
    a, b = P.unpaired_domains("digits_vs_inverted", images, labels)
    assert a["image"].shape == (6, 4, 4, 1) and b["image"].shape == (5, 4, 4, 1)
    np.testing.assert_array_equal(a["label"], np.arange(0, n, 2))
    np.testing.assert_array_equal(b["label"], np.arange(1, n, 2))
    a_ids = set(np.round(np.asarray(a["image"][:, 0, 0, 0]) * n).astype(int))
    b_ids = set(np.round(-np.asarray(b["image"][:, 0, 0, 0]) * n).astype(int))
    assert a_ids.isdisjoint(b_ids) and a_ids | b_ids == set(range(n))


@pytest.mark.parametrize("name", P.DOMAINS)
def test_unpaired_domains_on_digits(name):
    src = load_digits("train")
    x = T.to_symmetric(src.images, src.num_levels)  # [1437, 8, 8, 1]
    a, b = P.unpaired_domains(name, x, src.labels)
    assert len(a["image"]) == len(a["label"]) == 719 and len(b["image"]) == len(b["label"]) == 718
    np.testing.assert_array_equal(a["image"], x[0::2])
    np.testing.assert_array_equal(b["label"], src.labels[1::2])
    assert float(b["image"].min()) >= -1.0 and float(b["image"].max()) <= 1.0
    if name == "digits_vs_inverted":
        np.testing.assert_array_equal(-b["image"], x[1::2])
        assert float(b["image"].mean()) > 0.3 > -0.3 > float(a["image"].mean())  # dark strokes
    else:
        assert bool(jnp.all(b["image"] >= x[1::2]))  # dilation is extensive
        ink_a, ink_b = float((a["image"] > 0).mean()), float((b["image"] > 0).mean())
        assert ink_b > 1.5 * ink_a  # thicker strokes


def test_dilate_is_a_3x3_max_pool():
    x = np.full((1, 6, 6, 1), -1.0, np.float32)
    x[0, 2, 3] = 1.0
    x[0, 0, 0] = 0.5  # corner: the window is cut by the border
    d = np.asarray(P.dilate(jnp.asarray(x)))[0, :, :, 0]
    expected = np.full((6, 6), -1.0)
    expected[1:4, 2:5] = 1.0
    expected[0:2, 0:2] = np.maximum(expected[0:2, 0:2], 0.5)
    np.testing.assert_array_equal(d, expected)
    u = np.asarray(P.dilate(jnp.asarray((x + 1) / 2)))  # dilating in [0, 1] is the same
    np.testing.assert_allclose(2 * u - 1, d[None, :, :, None], atol=1e-6)


def test_unpaired_bad_arguments():
    x = jnp.zeros((4, 8, 8, 1))
    with pytest.raises(ValueError, match=r"unknown unpaired domains 'horses'; allowed: digits_vs"):
        P.unpaired_domains("horses", x, jnp.zeros(4, jnp.int32))
    with pytest.raises(ValueError, match=r"labels must be \[4\], got shape \(3,\)"):
        P.unpaired_domains("thin_vs_thick", x, jnp.zeros(3, jnp.int32))


# ---- transformation hygiene -------------------------------------------------------------------


@pytest.mark.parametrize("task", P.TASKS)
def test_make_pair_jit_agrees(task):
    x, key = _images((4, 8, 8, 1)), jax.random.key(7)
    eager = P.make_pair(task, x, key)
    jitted = jax.jit(functools.partial(P.make_pair, task))(x, key)
    for e, j in zip(eager, jitted, strict=True):
        np.testing.assert_allclose(e, j, atol=1e-6)
        assert bool(jnp.all(jnp.isfinite(j)))


def test_resampling_and_domains_jit_agree():
    x = _images((3, 8, 8, 2))
    labels = jnp.arange(3, dtype=jnp.int32)
    for fn in (
        functools.partial(P.downsample, factor=2),
        functools.partial(P.bicubic_upsample, factor=2),
        P.dilate,
        lambda y: P.unpaired_domains("thin_vs_thick", y, labels),
    ):
        jax.tree.map(
            functools.partial(np.testing.assert_allclose, atol=1e-6), fn(x), jax.jit(fn)(x)
        )
