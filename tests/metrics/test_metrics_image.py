"""PSNR and SSIM: known values, SSIM against a direct window-by-window evaluation of Wang et al.
(2004) (and against scikit-image when it is installed), jit agreement, input checks."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from gmzoo.metrics.image import gaussian_window, psnr, ssim


def _images(seed: int, shape=(3, 16, 16, 2)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=shape).astype(np.float32)
    y = np.clip(x + 0.2 * rng.normal(size=shape), 0, 1).astype(np.float32)
    return x, y


def _ssim_direct(x: np.ndarray, y: np.ndarray, size: int, sigma: float, max_value=1.0) -> float:
    """Mean SSIM of one [H, W, C] pair: weighted window statistics at every valid position."""
    t = np.arange(size) - (size - 1) / 2
    g = np.exp(-0.5 * (t / sigma) ** 2)
    w = np.outer(g, g) / np.outer(g, g).sum()  # 2-D window, sums to 1
    c1, c2 = (0.01 * max_value) ** 2, (0.03 * max_value) ** 2
    values = []
    for c in range(x.shape[2]):
        for i in range(x.shape[0] - size + 1):
            for j in range(x.shape[1] - size + 1):
                a = x[i:i + size, j:j + size, c].astype(np.float64)
                b = y[i:i + size, j:j + size, c].astype(np.float64)
                ma, mb = (w * a).sum(), (w * b).sum()
                va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
                cov = (w * (a - ma) * (b - mb)).sum()
                values.append((2 * ma * mb + c1) * (2 * cov + c2)
                              / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_psnr_known_value():
    x = np.zeros((2, 4, 4, 1), np.float32)
    y = np.full((2, 4, 4, 1), 0.1, np.float32)  # MSE 0.01 -> 20 dB
    np.testing.assert_allclose(np.asarray(psnr(x, y)), [20.0, 20.0], rtol=1e-5)
    # max_value 255, error 5 everywhere: 10 log10(255^2 / 25)
    np.testing.assert_allclose(np.asarray(psnr(x * 255, x + 5.0, max_value=255.0)),
                               10 * math.log10(255**2 / 25), rtol=1e-5)


def test_psnr_is_per_image_and_infinite_for_identical():
    x, y = _images(0)
    p = np.asarray(psnr(x, y))
    assert p.shape == (3,)
    mse = ((x - y) ** 2).reshape(3, -1).mean(1)
    np.testing.assert_allclose(p, 10 * np.log10(1 / mse), rtol=1e-5)
    assert np.isposinf(np.asarray(psnr(x, x))).all()


def test_ssim_of_identical_images_is_one():
    x, _ = _images(1)
    np.testing.assert_allclose(np.asarray(ssim(x, x)), 1.0, atol=1e-6)


def test_ssim_constant_images_closed_form():
    # Constant images a and b: all variances 0, so SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 0.2, 0.7
    x = np.full((1, 12, 12, 1), a, np.float32)
    y = np.full((1, 12, 12, 1), b, np.float32)
    c1 = 0.01**2
    np.testing.assert_allclose(np.asarray(ssim(x, y)),
                               (2 * a * b + c1) / (a**2 + b**2 + c1), rtol=1e-5)


@pytest.mark.parametrize("size,sigma,shape", [(11, 1.5, (3, 16, 16, 2)), (7, 0.8, (2, 8, 8, 1))])
def test_ssim_matches_direct_window_evaluation(size, sigma, shape):
    x, y = _images(2, shape)
    got = np.asarray(ssim(x, y, filter_size=size, filter_sigma=sigma))
    want = [_ssim_direct(x[i], y[i], size, sigma) for i in range(shape[0])]
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert np.all(got < 0.99)  # noisy copies are clearly below 1


def test_ssim_matches_skimage_if_installed():
    metrics = pytest.importorskip("skimage.metrics")
    x, y = _images(3, (2, 28, 28, 1))
    got = np.asarray(ssim(x, y))
    want = [metrics.structural_similarity(x[i], y[i], gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False, data_range=1.0,
                                          channel_axis=-1) for i in range(2)]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_ssim_decreases_with_noise_and_is_symmetric():
    x, _ = _images(4, (1, 16, 16, 1))
    rng = np.random.default_rng(5)
    noise = rng.normal(size=x.shape).astype(np.float32)
    values = [float(ssim(x, x + s * noise)[0]) for s in (0.02, 0.1, 0.3)]
    assert values[0] > values[1] > values[2]
    y = x + 0.1 * noise
    np.testing.assert_allclose(np.asarray(ssim(x, y)), np.asarray(ssim(y, x)), atol=1e-6)


def test_jit_matches_eager():
    x, y = _images(6)
    np.testing.assert_allclose(np.asarray(jax.jit(ssim)(x, y)), np.asarray(ssim(x, y)),
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.jit(psnr)(x, y)), np.asarray(psnr(x, y)),
                               rtol=1e-6)


def test_gaussian_window_normalised_and_symmetric():
    w = np.asarray(gaussian_window(11, 1.5))
    assert w.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(w, w[::-1], atol=1e-7)
    assert w.argmax() == 5


def test_bad_inputs_raise():
    x = np.zeros((1, 8, 8, 1), np.float32)
    with pytest.raises(ValueError, match="filter_size=11 must be in 1..min"):
        ssim(x, x)
    with pytest.raises(ValueError, match="one shape"):
        psnr(x, np.zeros((1, 8, 8, 2)))
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        ssim(x[0], x[0], filter_size=3)
