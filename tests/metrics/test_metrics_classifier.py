"""Feature-net classifier: shapes, accuracy after the short session training, determinism, and
the msgpack cache (reloading gives the very features of the fresh training)."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from metrics_testdata import to01

from gmzoo.metrics import classifier

pytestmark = pytest.mark.optimized  # real compute: full XLA optimisation (tests/conftest.py)


@pytest.mark.parametrize("net_name", ["digits_net", "mnist5k_net"])
def test_shapes_and_finite(net_name, request):
    net = request.getfixturevalue(net_name)
    x = to01(net.test)[:5]
    f = np.asarray(net.features(net.params, x))
    lg = np.asarray(classifier.logits(net.params, x))
    assert f.shape == (5, 64) and lg.shape == (5, 10)
    assert np.all(np.isfinite(f)) and np.all(np.isfinite(lg))
    assert np.all(f >= 0)  # post-ReLU penultimate layer


@pytest.mark.parametrize("net_name,minimum", [("digits_net", 0.90), ("mnist5k_net", 0.85)])
def test_short_training_is_accurate(net_name, minimum, request):
    # 100 steps only (measured 0.961 digits, 0.919 mnist5k); chance is 0.1.
    net = request.getfixturevalue(net_name)
    assert classifier.accuracy(net.params, to01(net.test), net.test.labels) > minimum


def test_cache_file_reloads_to_identical_features(digits_net, monkeypatch):
    files = os.listdir(digits_net.cache_dir)
    assert len(files) == 1
    assert files[0].startswith(f"feature_net_digits_{classifier.FEATURE_NET_VERSION}_")
    assert files[0].endswith(".msgpack")

    def no_training(*args, **kwargs):
        raise AssertionError("the cached feature net should have been loaded, not retrained")

    monkeypatch.setattr(classifier, "train_classifier", no_training)
    train = digits_net.train
    fn, params = classifier.load_or_train_feature_net(
        "digits", digits_net.cache_dir, train_images=train.images, train_labels=train.labels,
        num_levels=train.num_levels, steps=digits_net.steps)
    jax.tree.map(np.testing.assert_array_equal, params, digits_net.params)
    x = to01(digits_net.test)
    np.testing.assert_array_equal(np.asarray(fn(params, x)),
                                  np.asarray(digits_net.features(digits_net.params, x)))


def test_training_is_deterministic_and_seed_dependent(digits_net):
    train = digits_net.train
    x, y = to01(train), train.labels
    again = classifier.train_classifier(x, y, seed=0, steps=digits_net.steps)
    jax.tree.map(np.testing.assert_array_equal, again, digits_net.params)
    other = classifier.train_classifier(x, y, seed=1, steps=digits_net.steps)  # no recompile
    assert not np.array_equal(np.asarray(other["params"]["head"]["bias"]),
                              np.asarray(again["params"]["head"]["bias"]))


def test_cache_name_depends_on_data_and_settings(digits_net):
    tr = digits_net.train
    kw = dict(num_levels=17, num_classes=10, seed=0, steps=100)
    base = classifier.cache_path("digits", "/c", tr.images, tr.labels, **kw)
    assert base == classifier.cache_path("digits", "/c", tr.images.copy(), tr.labels, **kw)
    changed_labels = tr.labels.copy()
    changed_labels[0] = (changed_labels[0] + 1) % 10
    others = [
        classifier.cache_path("digits", "/c", tr.images, changed_labels, **kw),
        classifier.cache_path("digits", "/c", tr.images[1:], tr.labels[1:], **kw),
        classifier.cache_path("digits", "/c", tr.images, tr.labels, **{**kw, "steps": 101}),
        classifier.cache_path("digits", "/c", tr.images, tr.labels, **{**kw, "seed": 1}),
        classifier.cache_path("other", "/c", tr.images, tr.labels, **kw),
    ]
    assert len({base, *others}) == 6


def test_mismatched_cache_file_raises(tmp_path, digits_net):
    tr = digits_net.train
    tiny = (tr.images[:64], tr.labels[:64])
    path = classifier.cache_path("digits", str(tmp_path), *tiny, num_levels=17, num_classes=10,
                                 seed=0, steps=1)
    with open(path, "wb") as f:  # a file of the wrong structure under the right name
        from flax import serialization
        f.write(serialization.msgpack_serialize({"params": {"head": {"bias": np.zeros(3)}}}))
    with pytest.raises(ValueError, match="delete the file to retrain"):
        classifier.load_or_train_feature_net("digits", str(tmp_path), train_images=tiny[0],
                                             train_labels=tiny[1], num_levels=17, steps=1)


def test_features_compile_once_per_shape(digits_net):
    x = to01(digits_net.test)[:32]
    classifier.features(digits_net.params, x)
    before = classifier._features._cache_size()
    classifier.features(digits_net.params, x + 0.0)
    assert classifier._features._cache_size() == before


def test_bad_inputs_raise(digits_net):
    with pytest.raises(ValueError, match=r"\[B, H, W, 1\]"):
        classifier.features(digits_net.params, np.zeros((2, 8, 8, 3)))
    with pytest.raises(ValueError, match="labels must be"):
        classifier.train_classifier(np.zeros((10, 8, 8, 1)), np.zeros(9), steps=1, batch_size=2)
    with pytest.raises(ValueError, match="raw integer levels 0..num_levels-1 = 0..16"):
        classifier.load_or_train_feature_net("digits", "/nonexistent", num_levels=17,
                                             train_images=np.full((4, 8, 8, 1), 0.5),
                                             train_labels=np.zeros(4))
    with pytest.raises(ValueError, match="batch_size 128 <= number of images 10"):
        classifier.train_classifier(np.zeros((10, 8, 8, 1)), np.zeros(10), steps=1)
