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


# --- constraints, declared with the field they constrain --------------------------------------
# A family declares its own options the same way, and `validate` checks every section of every
# config without knowing the family: the rule lives in the field's metadata.

def choice(default: str, *choices: str) -> Any:
    """A ``str`` field that takes one of ``(default, *choices)``."""
    return dataclasses.field(default=default, metadata={"choices": (default, *choices)})


def positive(default: Any) -> Any:
    """A number field that must be > 0."""
    return dataclasses.field(default=default, metadata={"check": "positive"})


def non_negative(default: Any) -> Any:
    """A number field that must be >= 0."""
    return dataclasses.field(default=default, metadata={"check": "non_negative"})


def unit_interval(default: float) -> Any:
    """A number field in [0, 1)."""
    return dataclasses.field(default=default, metadata={"check": "unit_interval"})


def at_least(default: int, minimum: int) -> Any:
    """An integer field that must be >= ``minimum`` (e.g. -1 for "all classes in turn")."""
    return dataclasses.field(default=default, metadata={"minimum": minimum})


_CHECKS = {"positive": (lambda v: v > 0, "must be > 0"),
           "non_negative": (lambda v: v >= 0, "must be >= 0"),
           "unit_interval": (lambda v: 0.0 <= v < 1.0, "must be in [0, 1)")}


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
    binarize: str = choice("none", "fixed", "dynamic")
    scale: str = choice("unit", "symmetric", "levels")
    dequantize: bool = False
    data_dir: str | None = None


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """An optax chain: clipping, then the optimizer with a warm-up + schedule, built in
    :func:`gmzoo.train.optim.make_optimizer`."""

    optimizer: str = choice("adam", "adamw", "sgd")
    learning_rate: float = positive(1e-3)
    schedule: str = choice("constant", "cosine")
    warmup_steps: int = non_negative(0)
    grad_clip_norm: float = non_negative(0.0)  # 0 disables clipping
    weight_decay: float = non_negative(0.0)
    b1: float = unit_interval(0.9)
    b2: float = unit_interval(0.999)
    ema_decay: float = unit_interval(0.999)  # 0 disables the EMA (EMA params == params)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = positive(5000)
    batch_size: int = positive(128)  # global batch, split over all devices and processes
    seed: int = non_negative(0)
    steps_per_call: int = positive(1)  # steps fused into one compiled call (lax.scan over batches)
    compute_dtype: str = choice("float32", "bfloat16")  # parameters stay float32
    log_every: int = positive(100)
    eval_every: int = non_negative(1000)  # 0 disables periodic evaluation
    sample_every: int = non_negative(1000)  # 0 disables periodic sample grids
    checkpoint_every: int = positive(1000)
    keep_checkpoints: int = positive(3)
    progress_bar: bool = True


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What ``gmzoo evaluate`` shares across families. A family with evaluation options of its
    own (importance samples, ODE steps, AIS chains) subclasses it (``Recipe.eval_config``)."""

    num_samples: int = positive(1000)  # samples for FD / KID
    batch_size: int = positive(100)
    max_examples: int = non_negative(0)  # 0: the whole test split
    seed: int = 1234  # evaluation uses this fixed key
    feature_net_steps: int = non_negative(0)  # FD/KID classifier steps; 0: its default per set


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """A family's sampler options (``--set sample.X=...``): the base has none. A family with
    several samplers or sampler settings subclasses it (``Recipe.sample_config``), e.g.
    :class:`gmzoo.recipes.diffusion.DiffusionSampleConfig`."""


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


# Keys of the sample and eval sections that every saved run held while those sections were shared
# by all families (gmzoo <= 0.1). A family's own section may lack them; a saved run still loads.
LEGACY_KEYS = {
    "sample": ("sampler", "steps", "eta", "guidance", "guide", "class_label", "ode_method",
               "corrector_steps", "snr", "clip"),
    "eval": ("iwae_k", "vlb_timesteps", "ode_steps", "ode_method", "ode_grid", "trace"),
}


def experiment_from_dict(d: dict[str, Any], *, model_cls: type, sample_cls: type = SampleConfig,
                         eval_cls: type = EvalConfig) -> "ExperimentConfig":
    """Rebuilds an experiment config saved as JSON with the family's classes of its model,
    sample and eval sections (legacy shared keys they lack are dropped, see ``LEGACY_KEYS``)."""

    def section(name: str, cls: type) -> Any:
        data = dict(d.get(name, {}))
        fields = {f.name for f in dataclasses.fields(cls)}
        for k in LEGACY_KEYS.get(name, ()):
            if k not in fields:
                data.pop(k, None)
        return from_dict(cls, data, prefix=f"{name}.")

    return ExperimentConfig(
        model=from_dict(model_cls, d["model"], prefix="model."),
        data=section("data", DataConfig), optim=section("optim", OptimConfig),
        train=section("train", TrainConfig), eval=section("eval", eval_cls),
        sample=section("sample", sample_cls))


def _unknown_key_message(key: str, allowed: list[str], config: Any = None) -> str:
    section = key.split(".", 1)[0]
    model = getattr(getattr(config, "model", None), "name", None)
    if model and section in ("sample", "eval"):
        # The family's own section: say whose options these are, and name only them.
        allowed = [k for k in allowed if k.startswith(section + ".")]
        if not allowed:
            return (f"model {model} has one sampler and no sample.* options; {key!r} is not one "
                    "of its settings")
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return (f"model {model} has no option {key!r}.{hint} Its {section} options: "
                f"{', '.join(sorted(allowed))}")
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown config key {key!r}.{hint} Allowed: {', '.join(sorted(allowed))}"


def all_keys(config: Any) -> list[str]:
    """Every dotted leaf key of a nested config dataclass."""
    return [key for key, _, _ in _leaves(config)]


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
            raise ConfigError(_unknown_key_message(key, allowed, config))
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


def _leaves(config: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, value, field metadata)`` of every leaf of a nested config."""
    out = []
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if dataclasses.is_dataclass(v):
            out += _leaves(v, f"{prefix}{f.name}.")
        else:
            out.append((prefix + f.name, v, f.metadata))
    return out


def validate(config: ExperimentConfig) -> None:
    """Refuses values no run can use, with what was wrong and what is allowed: each field's
    declared constraint (``choice``, ``positive``, ...), in every section, the family's own too."""
    for key, value, meta in _leaves(config):
        if "choices" in meta and value not in meta["choices"]:
            raise ConfigError(f"{key}={value!r} is not allowed; choose one of "
                              f"{', '.join(meta['choices'])}")
        if "minimum" in meta and not value >= meta["minimum"]:
            raise ConfigError(f"{key}={value} must be >= {meta['minimum']}")
        if "check" in meta:
            ok, what = _CHECKS[meta["check"]]
            if not ok(value):
                raise ConfigError(f"{key}={value} {what}")
    t = config.train
    if t.checkpoint_every % t.steps_per_call:
        raise ConfigError(
            f"train.checkpoint_every={t.checkpoint_every} must be a multiple of "
            f"train.steps_per_call={t.steps_per_call} (checkpoints fall between compiled calls)")
    if config.data.binarize != "none" and config.data.dequantize:
        raise ConfigError("data.dequantize=true cannot be combined with data.binarize; pick one")
