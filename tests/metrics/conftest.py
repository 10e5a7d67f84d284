"""Session fixtures for the metrics tests: feature nets trained once per data set per session
(few steps; the full-length accuracy check is test_metrics_classifier_accuracy.py)."""

from __future__ import annotations

import os
from typing import NamedTuple

import pytest
from metrics_testdata import Split, load_split

from gmzoo.metrics import classifier

# Steps for the session feature nets: enough to beat chance by far, cheap enough for the suite.
TEST_STEPS = {"digits": 100, "mnist5k": 100}


class FeatureNet(NamedTuple):
    features: object  # features(params, images01) -> [B, F]
    params: dict
    cache_dir: str
    train: Split
    test: Split
    steps: int


def _feature_net(name: str, tmp_path_factory: pytest.TempPathFactory) -> FeatureNet:
    train, test = load_split(name, "train"), load_split(name, "test")
    cache_dir = str(tmp_path_factory.mktemp(f"feature_net_{name}"))
    assert not os.listdir(cache_dir)
    fn, params = classifier.load_or_train_feature_net(
        name, cache_dir, train_images=train.images, train_labels=train.labels,
        num_levels=train.num_levels, steps=TEST_STEPS[name])
    return FeatureNet(fn, params, cache_dir, train, test, TEST_STEPS[name])


@pytest.fixture(scope="session")
def digits_net(tmp_path_factory: pytest.TempPathFactory) -> FeatureNet:
    return _feature_net("digits", tmp_path_factory)


@pytest.fixture(scope="session")
def mnist5k_net(tmp_path_factory: pytest.TempPathFactory) -> FeatureNet:
    return _feature_net("mnist5k", tmp_path_factory)
