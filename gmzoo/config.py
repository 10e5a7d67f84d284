"""Experiment configuration: frozen, typed dataclasses, one per component.

An :class:`ExperimentConfig` composes a model config (one dataclass per family, named by its
``name`` field in :mod:`gmzoo.zoo`), a :class:`DataConfig`, an :class:`OptimConfig`, a
:class:`TrainConfig` and an :class:`EvalConfig`. It is converted to JSON and saved with every
checkpoint; :func:`override` applies ``key=value`` strings from the command line, once, at the
edge, with "did you mean" answers for misspelled keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from typing import Any


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What the model sees.

    Attributes:
      name: a data set from ``gmzoo list`` (``digits``, ``mnist5k``, or a TFDS image set).
      binarize: ``"none"``, ``"fixed"`` (threshold 0.5 of the [0, 1] image, the same every epoch)
        or ``"dynamic"`` (a fresh Bernoulli draw of the [0, 1] image every step; evaluation uses
        one draw of the test set with a fixed key).
      scale: ``"unit"`` ([0, 1]), ``"symmetric"`` ([-1, 1]) or ``"levels"`` (integer levels
        0..L-1 as float, for categorical likelihoods). Ignored when binarizing.
      dequantize: add uniform noise within each level (continuous models of discrete data).
      data_dir: TFDS data directory for non-embedded sets.
    """

    name: str = "mnist5k"
    binarize: str = "none"
    scale: str = "unit"
    dequantize: bool = False
    data_dir: str | None = None


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """An optax chain: clipping, then the optimizer with a warm-up + schedule, built in
    :func:`gmzoo.train.optim.make_optimizer`."""

    optimizer: str = "adam"  # adam | adamw | sgd
    learning_rate: float = 1e-3
    schedule: str = "constant"  # constant | cosine
    warmup_steps: int = 0
    grad_clip_norm: float = 0.0  # 0 disables clipping
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    ema_decay: float = 0.999  # 0 disables the EMA (EMA params == params)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = 5000
    batch_size: int = 128  # global batch, split over all devices and processes
    seed: int = 0
    steps_per_call: int = 1  # steps fused into one compiled call (lax.scan over batches)
    compute_dtype: str = "float32"  # float32 | bfloat16 (parameters stay float32)
    log_every: int = 100
    eval_every: int = 1000  # 0 disables periodic evaluation
    sample_every: int = 1000  # 0 disables periodic sample grids
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    progress_bar: bool = True


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    iwae_k: int = 1000  # importance samples for the log-likelihood estimate
    num_samples: int = 1000  # samples for FD / KID
    batch_size: int = 100
    max_examples: int = 0  # 0: the whole test split
    seed: int = 1234  # evaluation uses this fixed key
    feature_net_steps: int = 0  # training steps of the FD/KID classifier; 0: its default per set
    vlb_timesteps: int = 0  # diffusion bound: 0 sums all T terms, K > 0 a stratified estimate
    ode_steps: int = 100  # probability-flow ODE likelihood: fixed steps of eval.ode_method
    ode_method: str = "rk4"
    ode_grid: str = "logsnr"  # logsnr | uniform in t (see gmzoo.diffusion.solvers.time_grid)
    trace: str = "hutchinson"  # hutchinson | exact divergence (small images only)


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """How a model with several samplers draws (``gmzoo sample --sampler ... --steps ...``).

    Attributes:
      sampler: ``""`` (the model's default) or one the model lists in ``gmzoo list``: ``ddpm``
        (ancestral), ``ddim``, ``em`` (reverse-SDE Euler-Maruyama), ``rd`` (reverse-diffusion
        predictor), ``pc`` (predictor-corrector), ``ode`` (probability-flow ODE).
      steps: sampler steps; 0: the model's default (all T steps for ``ddpm``).
      eta: DDIM noise (0: deterministic, 1: DDPM-like).
      guidance: guidance weight w (classifier-free: (1 + w) eps(x, c) - w eps(x); classifier:
        the scale of grad log p(c | x_t)); 0: none.
      guide: ``free`` (classifier-free; class-conditional models) or ``classifier`` (models
        trained with a noise-conditional classifier).
      class_label: the class to draw; -1: classes 0..K-1 in turn (conditional models).
      ode_method: ``euler``, ``heun`` or ``rk4`` for the ``ode`` sampler.
      corrector_steps, snr: Langevin corrector of ``pc`` (Song et al. 2021).
      clip: clip the predicted x_0 to the data range [-1, 1] (DDPM, DDIM).
    """

    sampler: str = ""
    steps: int = 0
    eta: float = 0.0
    guidance: float = 0.0
    guide: str = "free"
    class_label: int = -1
    ode_method: str = "rk4"
    corrector_steps: int = 1
    snr: float = 0.16
    clip: bool = True


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    model: Any
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    sample: SampleConfig = SampleConfig()


class ConfigError(ValueError):
    """A config value or key that is not allowed (raised before any compute)."""


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-able dict of a (nested) config dataclass."""
    return dataclasses.asdict(config)


def to_json(config: Any) -> str:
    return json.dumps(to_dict(config), indent=2, sort_keys=True)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(value: Any, annotation: Any, key: str) -> Any:
    """Converts a JSON value or a command-line string to the field's declared type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        non_none = [a for a in args if a is not type(None)]
        return _convert(value, non_none[0], key)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if not math.isfinite(f) or f != int(f):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(f)
    if annotation is float:
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if not math.isfinite(f):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return f
    if annotation is str:
        return str(value)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.strip().strip("()[]").split(",") if v.strip()]
        elem = args[0] if args else Any
        return tuple(_convert(v, elem, key) for v in value)
    return value


def from_dict(cls: type, data: dict[str, Any], *, prefix: str = "") -> Any:
    """Builds a config dataclass from a dict, refusing unknown keys with a suggestion."""
    hints = _field_types(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for k, v in data.items():
        if k not in names:
            raise ConfigError(_unknown_key_message(prefix + k, [prefix + n for n in names]))
        ann = hints[k]
        if dataclasses.is_dataclass(ann) and isinstance(v, dict):
            kwargs[k] = from_dict(ann, v, prefix=f"{prefix}{k}.")
        else:
            kwargs[k] = _convert(v, ann, prefix + k)
    return cls(**kwargs)


def _unknown_key_message(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown config key {key!r}.{hint} Allowed: {', '.join(sorted(allowed))}"


def all_keys(config: Any, prefix: str = "") -> list[str]:
    """Every dotted leaf key of a nested config dataclass."""
    keys = []
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if dataclasses.is_dataclass(v):
            keys += all_keys(v, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def override(config: Any, assignments: list[str]) -> Any:
    """Applies ``["train.steps=100", "model.latent_dim=16", ...]`` to a nested config."""
    for item in assignments:
        if "=" not in item:
            raise ConfigError(f"--set takes key=value, got {item!r} (e.g. --set train.steps=100)")
        key, value = item.split("=", 1)
        key = key.strip()
        if key == "model.name":
            raise ConfigError("model.name cannot be set; pass the model name as the first "
                              "argument, e.g. `gmzoo train conv_vae`")
        allowed = all_keys(config)
        if key not in allowed:
            raise ConfigError(_unknown_key_message(key, allowed))
        config = _replace_path(config, key.split("."), value, key)
    return config


def _replace_path(obj: Any, path: list[str], value: str, key: str) -> Any:
    head, rest = path[0], path[1:]
    if rest:
        return dataclasses.replace(obj, **{head: _replace_path(getattr(obj, head), rest, value, key)})
    ann = _field_types(type(obj))[head]
    return dataclasses.replace(obj, **{head: _convert(value, ann, key)})


def diff(a: Any, b: Any, *, ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys whose values differ between two configs of the same shape."""
    da, db = _flatten(to_dict(a)), _flatten(to_dict(b))
    return [k for k in sorted(set(da) | set(db)) if k not in ignore and da.get(k) != db.get(k)]


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = list(v) if isinstance(v, tuple) else v
    return out


_CHOICES = {
    "data.binarize": ("none", "fixed", "dynamic"),
    "data.scale": ("unit", "symmetric", "levels"),
    "optim.optimizer": ("adam", "adamw", "sgd"),
    "optim.schedule": ("constant", "cosine"),
    "train.compute_dtype": ("float32", "bfloat16"),
    "sample.guide": ("free", "classifier"),
    "sample.ode_method": ("euler", "heun", "rk4"),
    "eval.ode_method": ("euler", "heun", "rk4"),
    "eval.ode_grid": ("logsnr", "uniform"),
    "eval.trace": ("hutchinson", "exact"),
}
_POSITIVE = ("optim.learning_rate", "train.steps", "train.batch_size", "train.steps_per_call",
             "train.log_every", "train.checkpoint_every", "train.keep_checkpoints",
             "eval.iwae_k", "eval.num_samples", "eval.batch_size")
_NON_NEGATIVE = ("sample.steps", "sample.eta", "sample.guidance", "sample.corrector_steps",
                 "sample.snr", "eval.ode_steps", "eval.vlb_timesteps", "eval.feature_net_steps", "optim.warmup_steps", "optim.grad_clip_norm", "optim.weight_decay",
                 "train.eval_every", "train.sample_every", "eval.max_examples", "train.seed")
_UNIT_INTERVAL = ("optim.ema_decay", "optim.b1", "optim.b2")


def validate(config: ExperimentConfig) -> None:
    """Refuses values no run can use, with what was wrong and what is allowed."""
    flat = _flatten(to_dict(config))
    for key, choices in _CHOICES.items():
        if flat[key] not in choices:
            raise ConfigError(f"{key}={flat[key]!r} is not allowed; choose one of {', '.join(choices)}")
    for key in _POSITIVE:
        if not flat[key] > 0:
            raise ConfigError(f"{key}={flat[key]} must be > 0")
    for key in _NON_NEGATIVE:
        if not flat[key] >= 0:
            raise ConfigError(f"{key}={flat[key]} must be >= 0")
    for key in _UNIT_INTERVAL:
        if not 0.0 <= flat[key] < 1.0:
            raise ConfigError(f"{key}={flat[key]} must be in [0, 1)")
    t = config.train
    if t.checkpoint_every % t.steps_per_call:
        raise ConfigError(
            f"train.checkpoint_every={t.checkpoint_every} must be a multiple of "
            f"train.steps_per_call={t.steps_per_call} (checkpoints fall between compiled calls)")
    if config.data.binarize != "none" and config.data.dequantize:
        raise ConfigError("data.dequantize=true cannot be combined with data.binarize; pick one")
