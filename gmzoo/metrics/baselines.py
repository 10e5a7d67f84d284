"""Likelihood baselines a generative model must beat, fitted on the training split.

Convention (as gmzoo/data/transforms.py): for data with L levels per dimension, a discrete
model's negative log-likelihood in nats per image over D dimensions gives

    bits/dim = NLL_nats / (D ln 2)                                                    (1)

- uniform over L levels:  NLL = D ln L, i.e. log2(L) bits/dim (4.09 for the 17-level digits).
- independent per-pixel categorical, add-`smoothing` (Laplace) estimate from training counts:
      p_d(k) = (n_d(k) + s) / (N + L s)                                                (2)
  On digits (train/test = first 1437 / last 360 of np.random.RandomState(0).permutation(1797))
  this is 107.4 nats = 2.42 bits/dim.
- independent Bernoulli for binarized data (L = 2):  p_d = (n_d(1) + s) / (N + 2 s).
Fitting is counting, done in numpy float64. Each function returns an `NLL` (nats per image,
bits/dim), averaged over the test images.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from jax.typing import ArrayLike


class NLL(NamedTuple):
    """Mean negative log-likelihood of a test set: nats per image and bits per dimension (1)."""

    nats: float
    bits_per_dim: float


def _nll(nats_per_image: float, num_dims: int) -> NLL:
    return NLL(float(nats_per_image), float(nats_per_image / (num_dims * math.log(2.0))))


def uniform_nll(num_levels: int, num_dims: int) -> NLL:
    """Uniform distribution over L levels in each of D dims: D ln L nats, log2 L bits/dim."""
    if num_levels < 2 or num_dims < 1:
        raise ValueError(f"uniform_nll needs num_levels >= 2 and num_dims >= 1, got "
                         f"{num_levels} and {num_dims}")
    return _nll(num_dims * math.log(num_levels), num_dims)


def _as_levels(x: ArrayLike, num_levels: int, name: str) -> np.ndarray:
    """Integer levels [N, D] in {0..L-1} from an array [N, ...] of whole-number values."""
    a = np.asarray(x)
    if a.ndim < 2:
        raise ValueError(f"{name} must be [N, ...] with N images, got shape {a.shape}")
    flat = a.reshape(a.shape[0], -1)  # [N, D]
    levels = np.rint(flat).astype(np.int64) if np.issubdtype(a.dtype, np.floating) else flat
    if np.issubdtype(a.dtype, np.floating) and not np.array_equal(levels, flat):
        raise ValueError(f"{name} must hold integer level values 0..{num_levels - 1} "
                         "(not [0, 1]-scaled floats)")
    levels = levels.astype(np.int64)
    if levels.size and (levels.min() < 0 or levels.max() >= num_levels):
        raise ValueError(f"{name} has values in [{levels.min()}, {levels.max()}]; allowed levels "
                         f"are 0..{num_levels - 1} (num_levels={num_levels})")
    return levels


def independent_categorical_nll(
    train: ArrayLike, test: ArrayLike, num_levels: int, smoothing: float = 1.0
) -> NLL:
    """Per-pixel categorical (2) fitted on train levels [N, ...], evaluated on test [M, ...]."""
    if smoothing <= 0:
        raise ValueError(f"smoothing must be > 0 (else unseen levels get log 0), got {smoothing}")
    tr = _as_levels(train, num_levels, "train")  # [N, D]
    te = _as_levels(test, num_levels, "test")  # [M, D]
    if tr.shape[1] != te.shape[1]:
        raise ValueError(f"train and test must have the same dims per image, got "
                         f"{tr.shape[1]} and {te.shape[1]}")
    n, d = tr.shape
    pixel = np.arange(d)[None, :]  # [1, D]
    counts = np.bincount((pixel * num_levels + tr).ravel(), minlength=d * num_levels)
    counts = counts.reshape(d, num_levels).astype(np.float64)  # [D, L]
    log_p = np.log(counts + smoothing) - np.log(n + num_levels * smoothing)  # [D, L]
    nll_per_image = -log_p[pixel, te].sum(axis=1)  # [M]
    return _nll(nll_per_image.mean(), d)


def independent_bernoulli_nll(
    train01: ArrayLike, test01: ArrayLike, smoothing: float = 1.0
) -> NLL:
    """Per-pixel Bernoulli, p_d = (n_d(1) + s)/(N + 2s), for binarized {0, 1} data [N, ...]."""
    return independent_categorical_nll(train01, test01, num_levels=2, smoothing=smoothing)
