"""The mu-law tones set: mu-law companding against its closed form (round trip within a level,
monotone), and the set itself (deterministic, split sizes, levels in range, varied, read by the
spine's batch pipeline)."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.data import signals
from gmzoo.data.pipeline import BatchIterator
from gmzoo.data.source import ArraySource


def test_mu_law_matches_the_closed_form():
    """Level = round((f(x) + 1) 255 / 2), f(x) = sign(x) ln(1 + 255 |x|) / ln 256."""
    xs = np.array([-1.0, -0.5, -0.01, 0.0, 0.003, 0.25, 1.0])
    f = np.sign(xs) * np.log1p(255 * np.abs(xs)) / math.log(256)
    expected = np.round((f + 1) * 127.5).astype(int)
    np.testing.assert_array_equal(np.asarray(signals.mu_law_encode(xs)), expected)
    assert expected[0] == 0 and expected[-1] == 255
    assert int(signals.mu_law_encode(2.0)) == 255 and int(signals.mu_law_encode(-3.0)) == 0
    np.testing.assert_allclose(np.asarray(signals.mu_law_decode([0, 255])), [-1.0, 1.0],
                               atol=1e-6)


def test_mu_law_round_trip_and_monotone():
    """decode then encode returns every level; encode then decode stays within half a level
    in the companded domain (within one level); encode is non-decreasing, decode increasing."""
    levels = np.arange(256)
    decoded = np.asarray(signals.mu_law_decode(levels))
    np.testing.assert_array_equal(np.asarray(signals.mu_law_encode(decoded)), levels)
    assert np.all(np.diff(decoded) > 0)
    x = np.linspace(-1.0, 1.0, 20001)
    q = np.asarray(signals.mu_law_encode(x))
    assert np.all(np.diff(q) >= 0) and q.min() == 0 and q.max() == 255
    f = np.sign(x) * np.log1p(255 * np.abs(x)) / math.log(256)
    f_back = 2.0 * q / 255 - 1.0  # companded value of the level's centre
    assert np.abs(f - f_back).max() <= 1 / 255 + 1e-6
    back = np.asarray(signals.mu_law_decode(q))
    np.testing.assert_array_equal(np.asarray(signals.mu_law_encode(back)), q)
    # mu-law spends its levels near 0: the level step is far finer there than at the ends
    assert decoded[129] - decoded[128] < (decoded[255] - decoded[254]) / 20


def test_tones_are_deterministic_and_seeded():
    a, b = signals.make_tones(64, (3, 0)), signals.make_tones(64, (3, 0))
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    c = signals.make_tones(64, (3, 1))
    assert not np.array_equal(a.images, c.images)


def test_tones_splits():
    """Sizes, shape, dtype and levels of both splits; examples differ from one another and
    within themselves; all four classes (harmonics 1..4) appear."""
    for split, n in (("train", 4000), ("test", 1000)):
        s = signals.load_tones(split)
        assert isinstance(s, ArraySource) and s.num_levels == 256 and s.num_classes == 4
        assert s.images.shape == (n, 256, 1, 1) and s.images.dtype == np.uint8
        assert len(s) == n and s.image_shape == (256, 1, 1)
        x = s.images[:, :, 0, 0].astype(np.int64)  # [n, T]
        assert x.min() >= 0 and x.max() <= 255
        assert x.min() < 30 and x.max() > 225  # loud examples reach both ends
        assert np.all(x.std(axis=1) > 1.0)  # no constant example
        assert len(np.unique(x, axis=0)) == n  # no two examples alike
        assert len(np.unique(x)) > 200  # mu-law spreads the values over the levels
        assert set(np.unique(s.labels).tolist()) == {0, 1, 2, 3}
    train, test = signals.load_tones("train"), signals.load_tones("test")
    assert not np.array_equal(train.images[:1000], test.images)
    assert signals.load_tones("train") is train  # cached
    with pytest.raises(ValueError, match="split"):
        signals.load_tones("validation")


def test_a_pure_tone_has_one_spectral_peak():
    """Label 0 (one harmonic) puts its energy at the fundamental; label 3 (four) has energy at
    2 f0 as well: the labels describe the signals."""
    rng = np.random.default_rng(0)
    signal, labels = signals.tone_waveforms(rng, 400, length=1024)

    def share_at_2f0(i):
        spectrum = np.abs(np.fft.rfft(signal[i])) ** 2
        f0 = int(np.argmax(spectrum[1:])) + 1
        return spectrum[2 * f0 - 2:2 * f0 + 3].sum() / spectrum.sum()

    pure = np.median([share_at_2f0(i) for i in np.nonzero(labels == 0)[0][:30]])
    rich = np.median([share_at_2f0(i) for i in np.nonzero(labels == 3)[0][:30]])
    assert pure < 0.02 < rich


def test_the_pipeline_reads_tones_as_levels():
    source = signals.load_tones("test")
    batch = next(BatchIterator(source, 8, seed=0))
    assert batch["image"].shape == (8, 256, 1, 1) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (8,)
    x = jnp.asarray(batch["image"])
    assert float(x.max()) <= 255 and np.array_equal(np.asarray(x), np.round(np.asarray(x)))
