"""A small CNN classifier whose penultimate layer gives the features for FD and KID.

On the small embedded sets no Inception network applies, so each data set gets its own feature
net, trained deterministically on the training split (fixed key, fixed data order, optax Adam,
a Python loop over one jitted step: on the XLA CPU backend a `lax.scan` over these conv steps ran
~8x slower, 170 vs 18 ms per 28x28 step) and cached in a msgpack file (flax.serialization) whose
name holds the data set name, `FEATURE_NET_VERSION` and a hash of the training data and
settings, so a stale cache is never picked up. Inputs are [B, H, W, 1] images in [0, 1].

Measured with DEFAULT_STEPS (400 steps of batch 128) on 2 CPU cores, compile included
(tests/metrics/test_metrics_classifier_accuracy.py with GMZOO_SLOW_TESTS=1):
  digits  (1437 train / 360 test):  98.6% test accuracy (355/360), 5.7 s;
  mnist5k (4000 train / 1000 test): 95.1% test accuracy (951/1000), 11.5 s.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gmzoo.train.state import TrainState, step_key
from gmzoo.train.step import make_train_step
from flax import serialization
from jax.typing import ArrayLike

# Bump when the architecture or the training recipe changes: old cache files are then ignored.
FEATURE_NET_VERSION = "v1"
# Training steps per data set (batch 128); others fall back to FALLBACK_STEPS.
DEFAULT_STEPS = {"digits": 400, "mnist5k": 400}
FALLBACK_STEPS = 1000

Params = dict


class FeatureCNN(nn.Module):
    """Strided conv stack -> dense feature layer (the penultimate layer) -> class logits.

    The feature net is always built with the default fields (FEATURE_NET_VERSION pins them);
    `features`/`logits` read only num_classes off the params.
    """

    conv_features: Sequence[int] = (32, 64)
    feature_dim: int = 64
    num_classes: int = 10

    def setup(self) -> None:
        self.convs = [nn.Conv(f, (3, 3), strides=(2, 2)) for f in self.conv_features]
        self.dense = nn.Dense(self.feature_dim)
        self.head = nn.Dense(self.num_classes)

    def features(self, x: jax.Array) -> jax.Array:
        """[B, H, W, 1] in [0, 1] -> penultimate activations [B, feature_dim]."""
        h = x - 0.5  # centre the inputs
        for conv in self.convs:
            h = nn.relu(conv(h))  # [B, H/2^i, W/2^i, F_i]
        h = h.reshape(h.shape[0], -1)  # [B, H' W' F]
        return nn.relu(self.dense(h))  # [B, feature_dim]

    def __call__(self, x: jax.Array) -> jax.Array:
        """[B, H, W, 1] in [0, 1] -> logits [B, num_classes]."""
        return self.head(self.features(x))


def _check_images01(images01: jax.Array) -> None:
    if images01.ndim != 4 or images01.shape[-1] != 1:
        raise ValueError(f"the feature net takes images [B, H, W, 1] scaled to [0, 1], got "
                         f"shape {images01.shape}")


def _model(params: Params) -> FeatureCNN:
    """The module matching params (the class count is read off the head's bias)."""
    return FeatureCNN(num_classes=params["params"]["head"]["bias"].shape[0])


@jax.jit
def _features(params: Params, images01: jax.Array) -> jax.Array:
    return _model(params).apply(params, images01, method=FeatureCNN.features)


@jax.jit
def _logits(params: Params, images01: jax.Array) -> jax.Array:
    return _model(params).apply(params, images01)


def features(params: Params, images01: ArrayLike) -> jax.Array:
    """Penultimate-layer features: images [B, H, W, 1] in [0, 1] -> [B, F]."""
    images01 = jnp.asarray(images01, jnp.float32)
    _check_images01(images01)
    return _features(params, images01)


def logits(params: Params, images01: ArrayLike) -> jax.Array:
    """Class logits: images [B, H, W, 1] in [0, 1] -> [B, num_classes]."""
    images01 = jnp.asarray(images01, jnp.float32)
    _check_images01(images01)
    return _logits(params, images01)


def accuracy(params: Params, images01: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of images whose arg-max logit equals the label."""
    pred = jnp.argmax(logits(params, images01), axis=-1)  # [B]
    return float(jnp.mean(pred == jnp.asarray(labels)))


def _loss(params: Params, images01: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
    """Mean softmax cross-entropy of the logits against integer labels."""
    out = FeatureCNN(num_classes=num_classes).apply(params, images01)  # [B, classes]
    return optax.softmax_cross_entropy_with_integer_labels(out, labels).mean()


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _init(key: jax.Array, example01: jax.Array, num_classes: int, num_images: int, steps: int,
          batch_size: int) -> tuple[Params, jax.Array]:
    """Initial params and the fixed data order: [steps, B] indices, one fresh
    permutation of the N training images per epoch (epoch e uses fold_in(key, e))."""
    key_init, key_order = jax.random.split(key)
    params = FeatureCNN(num_classes=num_classes).init(key_init, example01)
    epochs = -(-steps * batch_size // num_images)
    order = jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(key_order, e),
                                                      num_images))(jnp.arange(epochs))
    batches = order.reshape(-1)[: steps * batch_size].reshape(steps, batch_size)  # [S, B]
    return params, batches


def train_classifier(
    images01: ArrayLike,
    labels: ArrayLike,
    *,
    num_classes: int = 10,
    seed: int = 0,
    steps: int = FALLBACK_STEPS,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
) -> Params:
    """Train FeatureCNN on images [N, H, W, 1] in [0, 1] and int labels [N]; deterministic."""
    images01 = jnp.asarray(images01, jnp.float32)
    _check_images01(images01)
    labels = jnp.asarray(labels, jnp.int32)
    if labels.shape != images01.shape[:1]:
        raise ValueError(f"labels must be [N] for N={images01.shape[0]} images, got "
                         f"{labels.shape}")
    if batch_size > images01.shape[0] or steps < 1:
        raise ValueError(f"train_classifier needs steps >= 1 (got {steps}) and batch_size "
                         f"{batch_size} <= number of images {images01.shape[0]}")
    params, batches = _init(jax.random.key(seed), images01[:1], num_classes, images01.shape[0],
                            steps, batch_size)
    batches = np.asarray(batches)  # [S, B]
    images_np, labels_np = np.asarray(images01), np.asarray(labels)

    def loss_fn(params, batch, key):
        del key  # deterministic objective
        loss = _loss(params, batch["image"], batch["label"], num_classes)
        return loss, {}

    tx = optax.adam(learning_rate)
    # The spine's step; a Python loop over it, not lax.scan: a conv step inside a scan body runs
    # several times slower on XLA:CPU (see gmzoo.train.step.scan_steps).
    step = jax.jit(make_train_step(loss_fn, tx, ema_decay=0.0), donate_argnums=0)
    state = TrainState.create(params=params, tx=tx, key=jax.random.key(seed))
    for i in range(steps):
        batch = {"image": images_np[batches[i]], "label": labels_np[batches[i]]}
        state, _ = step(state, batch, step_key(state))
    return state.params


def cache_path(dataset_name: str, cache_dir: str, train_images: np.ndarray,
               train_labels: np.ndarray, *, num_levels: int, num_classes: int, seed: int,
               steps: int) -> str:
    """Cache file name: dataset, version and a hash of the training data and settings."""
    h = hashlib.sha1()
    for arr in (np.ascontiguousarray(train_images), np.ascontiguousarray(train_labels)):
        h.update(str((arr.dtype.str, arr.shape)).encode())
        h.update(arr.tobytes())
    h.update(f"{num_levels},{num_classes},{seed},{steps}".encode())
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in dataset_name)
    name = f"feature_net_{safe}_{FEATURE_NET_VERSION}_{h.hexdigest()[:12]}.msgpack"
    return os.path.join(cache_dir, name)


def load_or_train_feature_net(
    dataset_name: str,
    cache_dir: str,
    *,
    train_images: ArrayLike,
    train_labels: ArrayLike,
    num_levels: int,
    num_classes: int = 10,
    seed: int = 0,
    steps: int | None = None,
) -> tuple[Callable[[Params, ArrayLike], jax.Array], Params]:
    """(features, params): load the cached feature net for this data, or train and cache it.

    train_images are raw levels [N, H, W, 1] (0..num_levels-1), scaled by 1/(L-1) to [0, 1].
    steps defaults to DEFAULT_STEPS[dataset_name]. Use as `features(params, images01)`.
    """
    images = np.asarray(train_images)
    labels = np.asarray(train_labels).astype(np.int32)
    if num_levels < 2 or images.min() < 0 or images.max() > num_levels - 1 or np.any(
            images != np.round(images)):
        raise ValueError(f"train_images must be raw integer levels 0..num_levels-1 = "
                         f"0..{num_levels - 1} (not [0, 1]-scaled), got values in "
                         f"[{images.min()}, {images.max()}]")
    steps = DEFAULT_STEPS.get(dataset_name, FALLBACK_STEPS) if steps is None else steps
    path = cache_path(dataset_name, cache_dir, images, labels, num_levels=num_levels,
                      num_classes=num_classes, seed=seed, steps=steps)
    images01 = images.astype(np.float32) / (num_levels - 1)  # [N, H, W, 1]
    _check_images01(images01)
    template = jax.eval_shape(FeatureCNN(num_classes=num_classes).init, jax.random.key(0),
                              jnp.zeros((1,) + images01.shape[1:], jnp.float32))
    if os.path.exists(path):
        with open(path, "rb") as f:
            state = serialization.msgpack_restore(f.read())
        shapes = jax.tree.map(np.shape, state)
        if shapes != jax.tree.map(lambda s: s.shape, template):
            raise ValueError(f"cached feature net {path} does not match FeatureCNN "
                             f"{FEATURE_NET_VERSION}; delete the file to retrain")
        return features, jax.tree.map(jnp.asarray, state)
    params = train_classifier(images01, labels, num_classes=num_classes, seed=seed, steps=steps)
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(serialization.msgpack_serialize(serialization.to_state_dict(params)))
        os.replace(tmp, path)  # atomic: a reader never sees a half-written file
    finally:
        if os.path.exists(tmp):  # a failed write (a full disk) leaves no partial file behind
            os.remove(tmp)
    return features, params
