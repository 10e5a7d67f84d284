"""Optimizers and schedules, built in one place as optax chains."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from gmzoo.config import OptimConfig


def make_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """Linear warm-up to ``learning_rate``, then constant or cosine decay to 0 at ``total_steps``."""
    if cfg.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
            decay_steps=max(total_steps, cfg.warmup_steps + 1), end_value=0.0)
    if cfg.warmup_steps > 0:
        return optax.join_schedules(
            [optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps),
             optax.constant_schedule(cfg.learning_rate)], [cfg.warmup_steps])
    return optax.constant_schedule(cfg.learning_rate)


# Top-level parameter collection the optimizer never changes: pretrained weights a model uses
# (e.g. the autoencoder of latent diffusion). They are saved, restored and averaged like the rest.
FROZEN = "frozen"


def _labels(params):
    if not isinstance(params, dict):
        return jax.tree.map(lambda _: "train", params)
    return {k: jax.tree.map(lambda _: FROZEN if k == FROZEN else "train", v)
            for k, v in params.items()}


def make_optimizer(cfg: OptimConfig, total_steps: int) -> optax.GradientTransformation:
    """Gradient clipping (global norm) followed by adam / adamw / sgd on the schedule, for every
    parameter outside ``params["frozen"]`` (which gets zero updates)."""
    lr = make_schedule(cfg, total_steps)
    if cfg.optimizer == "adam":
        opt = optax.adam(lr, b1=cfg.b1, b2=cfg.b2)
    elif cfg.optimizer == "adamw":
        opt = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "sgd":
        opt = optax.sgd(lr, momentum=cfg.b1 or None)
    else:
        raise ValueError(f"optim.optimizer={cfg.optimizer!r}; choose adam, adamw or sgd")
    parts = []
    if cfg.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
    parts.append(opt)
    return optax.multi_transform({"train": optax.chain(*parts), FROZEN: optax.set_to_zero()},
                                 _labels)


def ema_decay_at(decay: float, step: jax.typing.ArrayLike) -> jax.Array:
    """EMA decay with the usual warm-up, ``min(decay, (1 + t) / (10 + t))``."""
    t = jnp.asarray(step, jnp.float32)
    return jnp.minimum(decay, (1.0 + t) / (10.0 + t))
