"""Embedded data sets: split sizes, determinism, partition, value ranges, csv layout."""

from __future__ import annotations

import numpy as np
import pytest

from gmzoo.data import embedded, registry
from gmzoo.data.source import ArraySource


def _rows(source: ArraySource) -> list[bytes]:
    return [img.tobytes() + bytes([lab]) for img, lab in zip(source.images, source.labels)]


@pytest.mark.parametrize(
    "loader, sizes, shape, levels",
    [
        (embedded.load_digits, (1437, 360), (8, 8, 1), 17),
        (embedded.load_mnist5k, (4000, 1000), (28, 28, 1), 256),
    ],
)
def test_split_sizes_dtypes_and_ranges(loader, sizes, shape, levels):
    train, test = loader("train"), loader("test")
    assert (len(train), len(test)) == sizes
    for s in (train, test):
        assert s.images.dtype == np.uint8 and s.images.shape[1:] == shape == s.image_shape
        assert s.labels.dtype == np.int32 and s.num_levels == levels and s.num_classes == 10
        assert s.images.max() == levels - 1 and s.images.min() == 0
        assert set(np.unique(s.labels)) == set(range(10))  # every class in both splits
        item = s[5]
        assert item["image"].shape == shape and item["label"] == s.labels[5]


def _full_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.uint8)[..., None], d.target.astype(np.int32)


@pytest.mark.parametrize(
    "loader, full", [(embedded.load_digits, _full_digits), (embedded.load_mnist5k, None)]
)
def test_split_is_deterministic_partition(loader, full):
    train, test = loader("train"), loader("test")
    loader.cache_clear()
    again = loader("train")
    assert again is not train  # really reloaded
    np.testing.assert_array_equal(again.images, train.images)
    np.testing.assert_array_equal(again.labels, train.labels)
    # train + test is exactly the full set (as a multiset of rows), shuffled (not sorted)
    images, labels = full() if full is not None else embedded._read_mnist5k()
    everything = ArraySource("full", images, labels, train.num_levels, 10)
    assert sorted(_rows(train) + _rows(test)) == sorted(_rows(everything))
    assert not np.array_equal(train.labels[:50], np.sort(train.labels[:50]))


def test_digits_split_matches_documented_baseline():
    """Add-1 smoothed per-pixel categorical: 107.4 nats = 2.42 bits/dim on this split (FACTS)."""
    train, test = embedded.load_digits("train"), embedded.load_digits("test")
    x_tr = train.images.reshape(len(train), -1)  # [N, 64]
    x_te = test.images.reshape(len(test), -1)
    counts = np.stack([(x_tr == k).sum(0) for k in range(17)], -1) + 1.0  # [64, 17]
    log_p = np.log(counts / counts.sum(-1, keepdims=True))
    nll = -log_p[np.arange(64), x_te].sum(-1).mean()
    assert nll == pytest.approx(107.4, abs=0.05)


def test_mnist5k_csv_layout_label_last_and_not_transposed():
    images, labels = embedded._read_mnist5k()
    np.testing.assert_array_equal(np.bincount(labels), np.full(10, 500))
    assert labels[0] == 0 and labels[-1] == 9  # rows are sorted by label
    # a "1" is a vertical stroke: its mean image spreads more over rows than over columns
    ones = images[labels == 1, :, :, 0].astype(np.float64).mean(0)  # [28, 28]
    pos = np.arange(28.0)

    def spread(profile: np.ndarray) -> float:
        p = profile / profile.sum()
        return float(np.sqrt((p * (pos - (p * pos).sum()) ** 2).sum()))

    assert spread(ones.sum(1)) > 1.5 * spread(ones.sum(0))


def test_cached_arrays_are_read_only_and_split_checked():
    s = embedded.load_digits("train")
    with pytest.raises(ValueError):
        s.images[0, 0, 0, 0] = 3
    with pytest.raises(ValueError, match="split must be one of"):
        embedded.load_digits("validation")


def test_registry_table_and_errors():
    assert registry.load("digits", "test") is embedded.load_digits("test")
    assert registry.load("mnist5k", "train") is embedded.load_mnist5k("train")
    names = registry.list_datasets()
    assert names[:2] == ["digits", "mnist5k"] and "cifar10" in names
    with pytest.raises(ValueError, match=r"unknown data set 'nope'.*digits, mnist5k") as err:
        registry.load("nope", "train")
    assert "\n" not in str(err.value)
