"""Sample quality in a feature space: Frechet distance (frechet.py) and KID (kid.py).

`feature_fn` maps images [B, H, W, C] in [0, 1] to features [B, F], e.g.
`functools.partial(classifier.features, params)` from `classifier.load_or_train_feature_net`.

A classifier-feature FD on a small data set has no standard scale, and FD is biased upward for
small samples (the bias shrinks like 1/N). So always report a model's FD beside
`reference_fd(feature_fn, train01, test01)`: the FD of held-out real images against the training
images, with the same feature net, the training images as the "real" side and as many generated
images as there are test images. A model whose samples come close to that figure is as far from
the training data as fresh real data is.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gmzoo.metrics.frechet import frechet_distance_from_features
from gmzoo.metrics.kid import kernel_inception_distance

FeatureFn = Callable[[jax.Array], jax.Array]


def compute_features(feature_fn: FeatureFn, images01: ArrayLike, *,
                     batch_size: int = 500) -> np.ndarray:
    """feature_fn over images [N, H, W, C] in fixed-size batches (the last one padded, so a
    jitted feature_fn compiles once) -> numpy float32 [N, F]."""
    images01 = np.asarray(images01, np.float32)
    if images01.ndim != 4 or images01.shape[0] < 1:
        raise ValueError(f"images must be [N >= 1, H, W, C] in [0, 1], got {images01.shape}")
    n = images01.shape[0]
    b = min(batch_size, n)
    out = []
    for start in range(0, n, b):
        chunk = images01[start:start + b]  # [<=b, H, W, C]
        pad = b - chunk.shape[0]
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
        out.append(np.asarray(feature_fn(jnp.asarray(chunk)))[: b - pad])
    return np.concatenate(out).astype(np.float32)


def fd_and_kid(
    feature_fn: FeatureFn,
    real01: ArrayLike,
    fake01: ArrayLike,
    *,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    key: jax.Array | None = None,
    batch_size: int = 500,
) -> dict[str, float]:
    """{"fd", "kid", "kid_std"} between real and generated images [N, H, W, C] in [0, 1].

    FD: Frechet distance of Gaussians fitted to the features (Heusel et al. 2017). KID: mean and
    std over `kid_subsets` subsets of unbiased MMD^2 (Binkowski et al. 2018); key defaults to
    jax.random.key(0).
    """
    real_f = compute_features(feature_fn, real01, batch_size=batch_size)  # [N, F]
    fake_f = compute_features(feature_fn, fake01, batch_size=batch_size)  # [M, F]
    if min(real_f.shape[0], fake_f.shape[0]) < 2:
        raise ValueError(f"fd_and_kid needs >= 2 real and >= 2 fake images, got "
                         f"{real_f.shape[0]} and {fake_f.shape[0]}")
    kid, kid_std = kernel_inception_distance(real_f, fake_f, num_subsets=kid_subsets,
                                             subset_size=kid_subset_size, key=key)
    return {"fd": frechet_distance_from_features(real_f, fake_f), "kid": kid, "kid_std": kid_std}


def reference_fd(feature_fn: FeatureFn, train01: ArrayLike, test01: ArrayLike, *,
                 batch_size: int = 500) -> float:
    """FD of held-out real images test01 against the training images train01 [N, H, W, C]: the
    scale to report beside a model's FD (computed with the same feature_fn and sample sizes)."""
    train_f = compute_features(feature_fn, train01, batch_size=batch_size)
    test_f = compute_features(feature_fn, test01, batch_size=batch_size)
    return frechet_distance_from_features(train_f, test_f)


def reference_fd_and_kid(feature_fn: FeatureFn, train01: ArrayLike, test01: ArrayLike,
                         **kwargs) -> dict[str, float]:
    """fd_and_kid of held-out real images (as the "fake" side) against the training images."""
    return fd_and_kid(feature_fn, train01, test01, **kwargs)
