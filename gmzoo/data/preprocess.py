"""From stored pixel levels to what a model sees, as set by a :class:`~gmzoo.config.DataConfig`.

Batches arrive holding raw levels ``0..L-1`` as float32 (see :mod:`gmzoo.data.pipeline`).
``prepare(batch, key)`` maps them into the model's data space inside the compiled step (so dynamic
binarization and dequantization draw fresh noise every step from the step's key); ``to_display``
maps the data space back to [0, 1] for sample grids and sample-quality metrics.

Data spaces and how likelihoods count (bits/dim = NLL in nats / (D ln 2)):
  binarize fixed/dynamic -> {0, 1}, L = 2 levels (uniform model: 1 bit/dim);
  scale unit -> [0, 1], symmetric -> [-1, 1], levels -> integer levels 0..L-1 (L = 17 for digits,
  256 for MNIST; uniform model: log2 L bits/dim).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp

from gmzoo.config import DataConfig
from gmzoo.data import transforms


@dataclasses.dataclass(frozen=True)
class DataSpace:
    """How a run's images are presented to the model."""

    prepare: Callable[[dict, jax.Array], dict]  # may draw noise from the key (evaluation
    # passes a fixed key, so the test split is binarized / dequantized the same way every time)
    to_display: Callable[[jax.Array], jax.Array]  # data space -> [0, 1]
    num_levels: int  # levels of the data space (2 when binarized)
    discrete: bool  # False when dequantized: a model of it is a density
    # With uniform dequantization, -log P(levels) <= -log p(x) + D * dequantization_nats_per_dim
    # (Jensen; the term is ln L for [0, 1], ln(L / 2) for [-1, 1], 0 for the levels scale).
    dequantization_nats_per_dim: float = 0.0


def make_data_space(cfg: DataConfig, num_levels: int) -> DataSpace:
    """The :class:`DataSpace` for a data config over images with ``num_levels`` levels."""

    def to_model(x: jax.Array, key: jax.Array) -> jax.Array:
        if cfg.binarize == "fixed":
            return transforms.binarize_fixed(transforms.to_unit(x, num_levels))
        if cfg.binarize == "dynamic":
            return transforms.binarize_dynamic(key, transforms.to_unit(x, num_levels))
        if cfg.dequantize:
            u = transforms.dequantize_uniform(key, x, num_levels)  # [0, 1)
            if cfg.scale == "symmetric":
                return 2.0 * u - 1.0
            if cfg.scale == "levels":
                return u * num_levels
            return u
        if cfg.scale == "symmetric":
            return transforms.to_symmetric(x, num_levels)
        if cfg.scale == "levels":
            return x.astype(jnp.float32)
        return transforms.to_unit(x, num_levels)

    def prepare(batch: dict, key: jax.Array) -> dict:
        return {**batch, "image": to_model(batch["image"], key)}

    def to_display(x: jax.Array) -> jax.Array:
        if cfg.binarize == "none" and cfg.scale == "symmetric":
            x = (x + 1.0) / 2.0
        elif cfg.binarize == "none" and cfg.scale == "levels":
            x = x / (num_levels - 1)
        return jnp.clip(x, 0.0, 1.0)

    binarized = cfg.binarize != "none"
    offset = 0.0
    if cfg.dequantize and not binarized:
        offset = {"unit": math.log(num_levels), "symmetric": math.log(num_levels / 2.0),
                  "levels": 0.0}[cfg.scale]
    return DataSpace(prepare=prepare, to_display=to_display,
                     num_levels=2 if binarized else num_levels,
                     discrete=binarized or not cfg.dequantize,
                     dequantization_nats_per_dim=offset)


def make_point_space(cfg: DataConfig) -> DataSpace:
    """The data space of a point set (``gmzoo.data.toys``): the points as they are, float32,
    continuous (no levels); ``to_display`` is the identity too (points are plotted, not shown
    as images). Image options (``binarize``, ``dequantize``, ``scale``) are refused by the
    spine's setup."""
    del cfg

    def prepare(batch: dict, key: jax.Array) -> dict:
        del key
        return {**batch, "image": jnp.asarray(batch["image"], jnp.float32)}

    return DataSpace(prepare=prepare, to_display=lambda x: x, num_levels=0, discrete=False)
