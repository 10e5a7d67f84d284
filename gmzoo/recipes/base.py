"""What the spine needs to drive one model: the :class:`Recipe` that each family fills in."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from gmzoo.config import ConfigError, ExperimentConfig


class Translation(NamedTuple):
    """One batch through an image-to-image model: each field ``[B, H, W, C]`` in the data space
    (what ``DataSpace.to_display`` maps to [0, 1]), all at the target's size."""

    source: jax.Array  # the model's input shown as an image (e.g. the masked digit, the
    #                    low-resolution image upsampled by pixel repetition)
    output: jax.Array  # the model's translation of the source
    target: jax.Array  # the ground truth (for unpaired models: the known map of the source,
    #                    which the model never saw paired)
    baseline: jax.Array  # a model-free answer to beat (e.g. bicubic upsampling)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How the spine drives one model.

    Attributes:
      name: the name used on the command line (``gmzoo train NAME``).
      description: one line for ``gmzoo list``.
      config_cls: the model config dataclass (its ``name`` field equals ``name``).
      default: the default :class:`ExperimentConfig` of ``gmzoo train NAME``.
      build: ``build(model_cfg, image_shape, num_levels) -> nn.Module``.
      check: ``check(experiment_cfg, image_shape)``: raise ConfigError for configs the model
        cannot take (wrong data space for its likelihood, image shape), before any compute.
      init: ``init(module, key, batch) -> variables`` on a real batch of training data in the
        data space (``init_batch`` examples), so data-dependent initialisation (k-means++,
        data marginals, ActNorm) works. Collections other than ``"params"`` become the train
        state's ``model_state``: state that persists across steps (batch statistics,
        persistent chains, a replay buffer), checkpointed and resumed to the bit.
      init_traced: ``init`` runs under ``jax.jit`` (one compiled program instead of hundreds of
        op-by-op dispatches, each its own small compile); ``False`` for an ``init`` that reads
        concrete values on the host (a check that raises on the data), which then runs eagerly,
        and is also computed in full to restore a checkpoint (others are only traced for it).
      init_batch: how many training examples ``init`` sees: 0, a whole training batch
        (``train.batch_size``); the default 2 suffices for shape-only initialisation.
      loss: ``loss(model_cfg, module) -> loss_fn(params, batch, key) -> (loss, metrics)``.
      sampler: ``sampler(model_cfg, module, *, mean, sampling) -> sample(params, key, n) ->
        [n, H, W, C]`` in the data space: the likelihood's mean (``mean=True``) or a draw from
        it; ``sampling`` is the experiment's ``sample`` section (an instance of
        ``sample_config``). ``None`` for image-to-image models (they have ``translate``).
      samplers: the ``sample.sampler`` names the model takes, its default first (the family's
        sample config then has a ``sampler`` field); empty: one sampler.
      check_sampling: ``check_sampling(model_cfg, sampling)``: raise ConfigError for sampler
        options the model cannot take.
      likelihoods: for likelihood models, ``likelihoods(model_cfg, module, eval_cfg) ->
        {label: fn(params, x, key) -> [B]}`` log p(x) in nats, exact or a bound or an
        estimate, which the label says (e.g. ``"IWAE (k=1000)"``, ``"exact"``); the first is
        the model's headline figure, the others are reported beside it.
      sample_batch: draw samples in batches of this size (0: all at once).
      train_step: for models that are not one loss minimised by one optimizer (e.g. a GAN's
        two players), ``train_step(config, module, *, prepare, compute_dtype,
        with_model_state) -> (tx, step_fn)``: the optax transformation the train state is
        created with and the pure ``step_fn(state, batch, key) -> (state, metrics)`` (metrics
        with ``loss`` and ``finite``, as :func:`gmzoo.train.step.make_train_step`'s). ``None``:
        the loop minimises ``loss`` with ``make_optimizer(config.optim)``. ``loss`` is still
        what held-out evaluation reports.
      translate: for image-to-image models, ``translate(model_cfg, module, *, sampling) ->
        fn(params, batch, key) -> Translation`` (``sampling``: the ``sample`` section) on a prepared batch of the data set (the recipe builds the source
        from it: a masked or shrunk image, the other domain). The spine then draws "samples" as
        translations of the test split: grids of source | output | target, FD/KID of the
        outputs, and PSNR/SSIM of the output and of the baseline against the target.
      baseline: what ``Translation.baseline`` is, e.g. ``"bicubic upsampling"``.
      data_kinds: the kinds of data set the model takes: ``"images"`` (digits, mnist5k, TFDS)
        and/or ``"points"`` (the 2-D toy sets of :mod:`gmzoo.data.toys`, whose "image" is a
        point ``[2]``); the spine refuses the others before any compute.
      sample_config, eval_config: the family's own ``sample`` and ``eval`` sections (frozen
        dataclasses subclassing :class:`~gmzoo.config.SampleConfig` and
        :class:`~gmzoo.config.EvalConfig`, their constraints declared with
        :func:`~gmzoo.config.choice`, :func:`~gmzoo.config.positive`, ...), set with
        ``--set sample.X=...`` / ``--set eval.X=...``. ``None``: the classes of ``default()``'s
        sections (see :attr:`sample_cls`, :attr:`eval_cls`).
      report: ``report(run, params, out_dir) -> {name: number or text}``: the family's own
        lines in ``gmzoo evaluate``'s report (``run`` is the spine's
        :class:`~gmzoo.train.loop.Run`); it may write figures into the existing folder
        ``out_dir`` and name them in its lines.
      first_stage: for a model trained on top of another trained run (latent diffusion on an
        autoencoder), the model config field holding that run's workdir; the spine loads it
        through its table and passes ``check`` and ``build`` a
        :class:`~gmzoo.train.loop.Stage` as ``stage=`` (its ``config``, ``run`` and ``state``).
      tiny: ``--set`` overrides that make the model tiny (tests, smoke runs): the contract test
        over the model table (tests/test_model_table.py) trains every row with them.
      uses_labels: ``uses_labels(model_cfg) -> bool``: whether the model reads the labels (the
        spine then checks ``model.num_classes`` against the data set's classes).
      inference_state: the model-state collections (see ``init``) that are part of the model
        at inference, not only of training (a VQ-VAE's EMA codebook ``"vq_state"``): sampling,
        the likelihoods, the held-out loss, ``translate`` and ``report`` then get ``params`` =
        ``{**ema_params, collection: model_state[collection], ...}``
        (:func:`gmzoo.train.loop.inference_params`), and so does a second stage built on the
        run. Empty (the default): they get the EMA parameters alone.
    """

    name: str
    description: str
    config_cls: type
    default: Callable[[], ExperimentConfig]
    build: Callable[[Any, tuple[int, int, int], int], nn.Module]
    check: Callable[[ExperimentConfig, tuple[int, int, int]], None]
    init: Callable[[nn.Module, jax.Array, dict], Any]
    loss: Callable[[Any, nn.Module], Callable]
    sampler: Callable[..., Callable] | None  # (model_cfg, module, *, mean: bool, sampling)
    samplers: tuple[str, ...] = ()
    check_sampling: Callable[[Any, Any], None] | None = None
    likelihoods: Callable[[Any, nn.Module, Any], dict[str, Callable]] | None = None
    sample_batch: int = 0
    train_step: Callable[..., tuple[Any, Callable]] | None = None
    translate: Callable[[Any, nn.Module], Callable] | None = None
    baseline: str = ""
    data_kinds: tuple[str, ...] = ("images",)
    init_batch: int = 2
    init_traced: bool = True
    sample_config: type | None = None
    eval_config: type | None = None
    report: Callable[[Any, Any, str], dict] | None = None
    uses_labels: Callable[[Any], bool] | None = None
    first_stage: str = ""
    inference_state: tuple[str, ...] = ()
    tiny: tuple[str, ...] = ()

    @property
    def sample_cls(self) -> type:
        """The class of the family's ``sample`` section."""
        return self.sample_config or type(self.default().sample)

    @property
    def eval_cls(self) -> type:
        """The class of the family's ``eval`` section."""
        return self.eval_config or type(self.default().eval)


def sample_labels(n: int, sampling: Any, num_classes: int) -> jax.Array:
    """The class of each of ``n`` samples of a conditional model: ``sampling.class_label``
    (a :class:`~gmzoo.config.SampleConfig`), or 0..K-1 in turn when it is -1. ``[n]`` int32."""
    if sampling.class_label >= 0:
        return jnp.full((n,), sampling.class_label, jnp.int32)
    return jnp.arange(n, dtype=jnp.int32) % num_classes


def check_first_stage_data(config: ExperimentConfig, first: ExperimentConfig, what: str) -> None:
    """Refuses (ConfigError, one line) a second stage whose data settings differ from those of
    its first stage's run ``first`` (the data directory may differ), naming the settings to
    use; ``what`` names the first stage ("the autoencoder's")."""
    if first.data != dataclasses.replace(config.data, data_dir=first.data.data_dir):
        d = first.data
        raise ConfigError(f"data must match {what}: --set data.name={d.name} "
                          f"data.binarize={d.binarize} data.scale={d.scale} "
                          f"data.dequantize={str(d.dequantize).lower()}")


def check_class_label(model: Any, class_label: int) -> None:
    """Refuses (ConfigError, one line) a ``sample.class_label`` the model cannot take: any
    label of an unconditional model (``model.num_classes`` 0), or one outside 0..K-1."""
    if class_label >= 0 and not model.num_classes:
        raise ConfigError(f"sample.class_label={class_label}: model {model.name} is "
                          "unconditional (set model.num_classes to train a conditional one)")
    if class_label >= model.num_classes > 0:
        raise ConfigError(f"sample.class_label={class_label}: the model has classes "
                          f"0..{model.num_classes - 1}")
