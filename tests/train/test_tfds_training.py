"""A TFDS image set trains, samples and evaluates through the same spine (offline: mocked)."""

import json
import os

import numpy as np
import tensorflow_datasets as tfds

from gmzoo.zoo import evaluate
from gmzoo.zoo import train


def test_mocked_fashion_mnist_trains_and_evaluates(tiny, tmp_path):
    cfg = tiny("vae", ["data.name=fashion_mnist", "train.steps=2", "train.log_every=1",
                       "train.checkpoint_every=2", "train.batch_size=8", "eval.batch_size=16",
                       "eval.max_examples=32", "eval.num_samples=16", "eval.feature_net_steps=5"])
    workdir = str(tmp_path / "fmnist")
    with tfds.testing.mock_data(num_examples=200):
        state = train(cfg, workdir, verbose=False)
        report = evaluate(workdir, verbose=False)
    assert report["data"] == "fashion_mnist"
    assert report["likelihood"]["num_dims"] == 28 * 28
    assert np.isfinite(report["likelihood"]["model"]["nll_nats"])
    assert os.path.exists(os.path.join(workdir, "eval", "step_0000002.json"))
    rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2]
