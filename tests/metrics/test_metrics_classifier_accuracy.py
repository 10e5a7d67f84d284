"""Full-length feature-net training (DEFAULT_STEPS) and its test accuracy: > 95% on digits,
> 93% on mnist5k. About 5 s + 20 s on 2 CPU cores, so it runs only with GMZOO_SLOW_TESTS=1:

    GMZOO_SLOW_TESTS=1 python -m pytest -q -s tests/metrics/test_metrics_classifier_accuracy.py
"""

from __future__ import annotations

import os
import time

import jax
import pytest
from metrics_testdata import load_split, to01

from gmzoo.metrics import classifier

pytestmark = pytest.mark.skipif(os.environ.get("GMZOO_SLOW_TESTS") != "1",
                                reason="full-length training; set GMZOO_SLOW_TESTS=1 to run")


@pytest.mark.parametrize("name,minimum", [("digits", 0.95), ("mnist5k", 0.93)])
def test_default_training_reaches_accuracy(name, minimum):
    train, test = load_split(name, "train"), load_split(name, "test")
    start = time.perf_counter()
    params = classifier.train_classifier(to01(train), train.labels,
                                         steps=classifier.DEFAULT_STEPS[name])
    jax.block_until_ready(params)
    seconds = time.perf_counter() - start
    acc = classifier.accuracy(params, to01(test), test.labels)
    print(f"\n{name}: {classifier.DEFAULT_STEPS[name]} steps in {seconds:.1f} s, "
          f"test accuracy {acc:.4f} on {len(test.labels)} images")
    assert acc > minimum
