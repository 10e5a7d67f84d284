"""Shared tiny configs for the spine's tests."""

import pytest

from gmzoo import config as cfglib
from gmzoo import zoo

TINY = [
    "data.name=digits", "model.hidden=(32,)", "model.latent_dim=4",
    "train.batch_size=16", "train.steps=6", "train.log_every=3", "train.eval_every=0",
    "train.sample_every=0", "train.checkpoint_every=6", "train.progress_bar=false",
    "eval.iwae_k=8", "eval.num_samples=64",
]


def tiny_config(model: str = "vae", extra: list[str] | None = None):
    return cfglib.override(zoo.get(model).default(), TINY + (extra or []))


@pytest.fixture
def tiny():
    return tiny_config
