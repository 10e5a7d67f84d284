"""Likelihood baselines: the digits figures of FACTS.md, hand-computed cases, input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from metrics_testdata import load_direct, load_split

from gmzoo.metrics.baselines import (independent_bernoulli_nll, independent_categorical_nll,
                                     uniform_nll)


def test_uniform_nll():
    nll = uniform_nll(17, 64)
    assert nll.nats == pytest.approx(64 * math.log(17))
    assert nll.bits_per_dim == pytest.approx(4.0875, abs=1e-4)  # 4.09 bits/dim on digits
    assert uniform_nll(256, 784).bits_per_dim == pytest.approx(8.0)


def test_digits_categorical_baseline_matches_facts():
    # FACTS.md: digits 1437/360 split (RandomState(0) permutation), add-1 per-pixel categorical
    # = 2.42 bits/dim = 107.4 nats/image; measured 107.4069 / 2.42118.
    train, test = load_split("digits", "train"), load_split("digits", "test")
    assert (len(train.images), len(test.images)) == (1437, 360)
    nll = independent_categorical_nll(train.images, test.images, num_levels=17)
    assert nll.nats == pytest.approx(107.4069, abs=1e-3)
    assert nll.bits_per_dim == pytest.approx(2.4212, abs=1e-4)
    assert nll.bits_per_dim == pytest.approx(nll.nats / (64 * math.log(2)))
    # Float level values give the same answer as uint8.
    assert independent_categorical_nll(train.images.astype(np.float32),
                                       test.images.astype(np.float32), 17) == nll


@pytest.mark.parametrize("name", ["digits", "mnist5k"])
def test_data_package_split_is_the_documented_one(name):
    # The baseline figures hold for first-N_train / rest of RandomState(0).permutation(N).
    pytest.importorskip("gmzoo.data.registry")
    for split in ("train", "test"):
        ours, theirs = load_direct(name, split), load_split(name, split)
        np.testing.assert_array_equal(theirs.images, ours.images)
        np.testing.assert_array_equal(theirs.labels, ours.labels)
        assert theirs.num_levels == ours.num_levels


def test_categorical_hand_computed():
    # One pixel, L = 3, train levels {0, 0, 2}: add-1 probs (3, 1, 2) / 6.
    train = np.array([[0], [0], [2]])
    test = np.array([[0], [1], [2]])
    nll = independent_categorical_nll(train, test, num_levels=3)
    expected = -(math.log(3 / 6) + math.log(1 / 6) + math.log(2 / 6)) / 3
    assert nll.nats == pytest.approx(expected)
    # Smoothing s: probs (2 + s, s, 1 + s) / (3 + 3 s).
    nll_half = independent_categorical_nll(train, test[:1], num_levels=3, smoothing=0.5)
    assert nll_half.nats == pytest.approx(-math.log(2.5 / 4.5))


def test_categorical_probabilities_normalise():
    # Summing exp(-nll) over every possible one-pixel test value gives 1 per pixel.
    rng = np.random.default_rng(0)
    train = rng.integers(0, 5, size=(20, 3))
    total = np.ones(3)
    for d in range(3):
        probs = []
        for level in range(5):
            test = np.zeros((1, 3), np.int64)
            test[0, d] = level
            other = independent_categorical_nll(train[:, [k for k in range(3) if k != d]],
                                                test[:, [k for k in range(3) if k != d]], 5)
            probs.append(math.exp(-(independent_categorical_nll(train, test, 5).nats
                                    - other.nats)))
        total[d] = sum(probs)
    np.testing.assert_allclose(total, 1.0, rtol=1e-10)


def test_bernoulli_hand_computed_and_equals_two_level_categorical():
    train = np.array([[1, 0], [1, 0], [0, 0]], np.float32)
    test = np.array([[1, 1]], np.float32)
    nll = independent_bernoulli_nll(train, test)
    # pixel 0: p1 = (2 + 1)/(3 + 2) = 0.6; pixel 1: p1 = (0 + 1)/5 = 0.2
    assert nll.nats == pytest.approx(-(math.log(0.6) + math.log(0.2)))
    assert nll.bits_per_dim == pytest.approx(nll.nats / (2 * math.log(2)))
    assert nll == independent_categorical_nll(train, test, num_levels=2)


def test_binarized_digits_bernoulli_beats_uniform():
    train, test = load_split("digits", "train"), load_split("digits", "test")
    tr = (train.images >= 8).astype(np.uint8)
    te = (test.images >= 8).astype(np.uint8)
    nll = independent_bernoulli_nll(tr, te)
    assert 0.3 < nll.bits_per_dim < 1.0  # uniform is 1 bit/dim


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="allowed levels are 0..16"):
        independent_categorical_nll(np.array([[17]]), np.array([[0]]), 17)
    with pytest.raises(ValueError, match="integer level values"):
        independent_categorical_nll(np.array([[0.5]]), np.array([[0.0]]), 17)
    with pytest.raises(ValueError, match="same dims"):
        independent_categorical_nll(np.zeros((2, 3)), np.zeros((2, 4)), 17)
    with pytest.raises(ValueError, match="smoothing must be > 0"):
        independent_categorical_nll(np.zeros((2, 3)), np.zeros((2, 3)), 17, smoothing=0.0)
    with pytest.raises(ValueError, match="allowed levels are 0..1"):
        independent_bernoulli_nll(np.full((2, 2), 2), np.zeros((2, 2)))
