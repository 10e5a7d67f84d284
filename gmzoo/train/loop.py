"""The training loop every family shares: ``train(config, workdir)``.

It validates the config against the data before any compute, builds the model from its
:class:`~gmzoo.recipes.base.Recipe`, compiles one data-parallel step (``jax.jit`` over a device mesh),
and runs it with a progress bar, JSONL + TensorBoard metrics, periodic held-out evaluation,
sample grids, orbax checkpoints (resumable to the bit) and a loss curve at the end.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from gmzoo import config as cfglib
from gmzoo.config import ConfigError, ExperimentConfig
from gmzoo.data import registry
from gmzoo.data.pipeline import BatchIterator, ordered_batches
from gmzoo.data.preprocess import DataSpace, make_data_space, make_point_space
from gmzoo.recipes.base import Recipe, Translation
from gmzoo.train import artifacts, parallel
from gmzoo.train.checkpoint import Checkpointer
from gmzoo.train.optim import make_optimizer
from gmzoo.train.state import TrainState
from gmzoo.train.step import make_train_step, scan_steps

# Keys that may change when a run is resumed: none changes the numbers of the steps already
# taken; train.steps extends (or shortens) the run, and with a cosine schedule also its length.
# Every eval.* and sample.* key may change too (they do not touch training).
RESUMABLE_CHANGES = ("train.steps", "train.checkpoint_every", "train.progress_bar", "train.log_every",
                     "train.eval_every", "train.sample_every", "train.keep_checkpoints", "data.data_dir")
RESUMABLE_SECTIONS = ("eval.", "sample.")

# A table: the model name -> its Recipe (``gmzoo.zoo.get``). The spine never imports the table;
# the edge (the command line, ``gmzoo.zoo``'s functions) hands it in.
Table = Callable[[str], Recipe]


class NonFiniteError(RuntimeError):
    """The loss or a gradient became NaN or Inf."""


@dataclasses.dataclass(eq=False)
class Run:
    """Everything built from an experiment config that training, sampling and evaluation share."""

    config: ExperimentConfig
    recipe: Recipe
    module: Any
    image_shape: tuple[int, ...]  # [H, W, C], or [2] for a point set
    space: DataSpace
    train_source: Any
    test_source: Any
    mesh: Any

    @property
    def points(self) -> bool:
        """Whether the data are 2-D points (a toy set) rather than images."""
        return registry.is_points(self.train_source)

    @property
    def loss_fn(self):
        return self.recipe.loss(self.config.model, self.module)

    @functools.cached_property
    def heldout_fn(self) -> Callable:
        """Compiled ``(params, raw_batch, prep_key, loss_key) -> metrics`` (built once)."""
        loss_fn, prepare = self.loss_fn, self.space.prepare

        def metrics_of(params, batch, prep_key, loss_key):
            loss, metrics = loss_fn(params, prepare(batch, prep_key), loss_key)
            return {"loss": loss, **metrics}

        return jax.jit(metrics_of)

    @functools.cached_property
    def translate_fn(self) -> Callable:
        """Compiled ``(params, raw_batch, prep_key, key) -> Translation`` of an image-to-image
        model (``Recipe.translate``), outputs in the data space (built once)."""
        translate = self.recipe.translate(self.config.model, self.module, sampling=self.config.sample)
        prepare = self.space.prepare
        return jax.jit(lambda params, batch, prep_key, key: translate(params, prepare(batch, prep_key), key))

    @functools.lru_cache(maxsize=2)
    def sample_fn(self, mean: bool) -> Callable:
        """Compiled ``(params, key, n) -> [n, H, W, C]`` in the data space (built once)."""
        return jax.jit(self.recipe.sampler(self.config.model, self.module, mean=mean,
                                           sampling=self.config.sample),
                       static_argnums=2)


class Stage:
    """A trained run that a two-stage model builds on (latent diffusion's autoencoder, a prior's
    VQ-VAE), loaded once through the table the spine was given. ``Recipe.first_stage`` names
    the model config field that holds its workdir; ``check`` and ``build`` get it as
    ``stage=``."""

    def __init__(self, workdir: str, table: Table, field: str):
        self.workdir, self.table, self.field = workdir, table, field

    @functools.cached_property
    def loaded(self) -> tuple["Run", TrainState]:
        """``(run, state)`` of the first stage's latest checkpoint (loaded on first use)."""
        ckpt_dir = os.path.join(os.path.abspath(self.workdir or "."), "checkpoints")
        if not self.workdir or not os.path.isdir(ckpt_dir):
            raise ConfigError(f"model.{self.field}={self.workdir!r} is not a trained run (no "
                              "checkpoints in it); train the first stage first and pass its "
                              f"workdir: --set model.{self.field}=WORKDIR")
        return load_run(self.workdir, self.table)

    @property
    def config(self) -> ExperimentConfig:
        return self.loaded[0].config

    @property
    def run(self) -> "Run":
        return self.loaded[0]

    @property
    def state(self) -> TrainState:
        return self.loaded[1]

    @property
    def params(self) -> Any:
        """What the first stage's model reads at inference (:func:`inference_params`)."""
        return inference_params(self.run, self.state)


def setup(config: ExperimentConfig, table: Table, *, devices: list | None = None) -> Run:
    """Validates ``config`` against its data and model, then builds the :class:`Run` of the
    family ``table(config.model.name)``.

    Every refusal (bad value, unknown data set, batch larger than the data, image shape the
    model cannot take, batch not divisible by the devices) happens here, before any compute.
    """
    recipe = table(config.model.name)
    if not isinstance(config.model, recipe.config_cls):
        raise ConfigError(f"model.name={config.model.name!r} does not match its config "
                          f"({type(config.model).__name__}); pass the model name as the first "
                          "argument of `gmzoo train` instead of setting model.name")
    for section, cls in (("sample", recipe.sample_cls), ("eval", recipe.eval_cls)):
        if type(getattr(config, section)) is not cls:
            raise ConfigError(f"the {section} section of a {recipe.name} experiment is a "
                              f"{cls.__name__}, got {type(getattr(config, section)).__name__}; start "
                              f"from zoo.get({recipe.name!r}).default()")
    cfglib.validate(config)
    if jax.process_count() > 1 and (config.train.eval_every or config.train.sample_every):
        raise ConfigError("periodic evaluation and sample grids run in a single process; with "
                          f"{jax.process_count()} processes set train.eval_every=0 and "
                          "train.sample_every=0 (then run `gmzoo evaluate` on the workdir)")
    d = config.data
    try:
        train_source = registry.load(d.name, "train", data_dir=d.data_dir)
        test_source = registry.load(d.name, "test", data_dir=d.data_dir)
    except registry.DatasetUnavailableError:
        raise
    except ValueError as e:
        raise ConfigError(f"data.name={d.name!r}: {e}") from None
    n_train = len(train_source)
    if config.train.batch_size > n_train:
        raise ConfigError(f"train.batch_size={config.train.batch_size} is larger than the "
                          f"{d.name} training split ({n_train} examples); use at most {n_train}")
    kind = "points" if registry.is_points(train_source) else "images"
    if kind not in recipe.data_kinds:
        what = ("a set of 2-D points" if kind == "points" else "an image data set")
        raise ConfigError(f"data.name={d.name!r} is {what}, and model {recipe.name} takes "
                          f"{' or '.join(recipe.data_kinds)} (`gmzoo list` names the models for "
                          f"{kind})")
    if kind == "points":
        changed = [k for k in ("binarize", "scale", "dequantize")
                   if getattr(d, k) != getattr(cfglib.DataConfig(), k)]
        if changed:
            raise ConfigError(f"data.{', data.'.join(changed)} apply to images; {d.name} is a set "
                              "of 2-D points, used as they are: leave them at their defaults")
    image_shape = tuple(int(s) for s in np.shape(train_source[0]["image"]))
    if recipe.uses_labels is not None and recipe.uses_labels(config.model):
        num_classes = config.model.num_classes
        if num_classes != train_source.num_classes:
            raise ConfigError(f"model.num_classes={num_classes} but {d.name} has "
                              f"{train_source.num_classes} classes; set model.num_classes="
                              f"{train_source.num_classes}")
    stage = {}
    if recipe.first_stage:
        stage = {"stage": Stage(getattr(config.model, recipe.first_stage), table, recipe.first_stage)}
    recipe.check(config, image_shape, **stage)
    check_sampling(recipe, config)
    mesh = parallel.data_mesh(devices)
    parallel.check_batch_divisible(config.train.batch_size, mesh)
    if config.train.batch_size % jax.process_count():
        raise ConfigError(f"train.batch_size={config.train.batch_size} must be a multiple of the "
                          f"number of processes ({jax.process_count()})")
    num_levels = int(getattr(train_source, "num_levels", 256))
    space = make_point_space(d) if kind == "points" else make_data_space(d, num_levels)
    module = recipe.build(config.model, image_shape, space.num_levels, **stage)
    return Run(config, recipe, module, image_shape, space, train_source, test_source, mesh)


def check_sampling(recipe: Recipe, config: ExperimentConfig) -> None:
    """Refuses ``sample.*`` options the model cannot take (before any compute). The keys the
    family's sample section lacks are refused earlier, by :func:`gmzoo.config.override`."""
    name = config.sample.sampler if recipe.samplers else ""
    if name and name not in recipe.samplers:
        raise ConfigError(f"sample.sampler={name!r}: model {recipe.name} takes "
                          f"{', '.join(recipe.samplers)}")
    if recipe.check_sampling is not None:
        recipe.check_sampling(config.model, config.sample)


def _initial_state(run: Run) -> TrainState:
    key = jax.random.key(run.config.train.seed)
    init_key, data_key, run_key = jax.random.split(key, 3)
    n = min(run.recipe.init_batch or run.config.train.batch_size, len(run.train_source))
    example = next(iter(ordered_batches(run.train_source, n, n)))  # the first n, in order
    example = run.space.prepare({"image": jnp.asarray(example["image"], jnp.float32),
                                 "label": jnp.asarray(example["label"], jnp.int32)}, data_key)
    init = functools.partial(run.recipe.init, run.module)
    variables = dict((jax.jit(init) if run.recipe.init_traced else init)(init_key, example))
    params = variables.pop("params")
    tx, _ = optimizer_and_step(run, with_model_state=bool(variables))
    return TrainState.create(params=params, tx=tx, key=run_key, model_state=variables)


def init_state(run: Run) -> TrainState:
    """The initial, replicated train state (parameters from ``init`` on a prepared batch)."""
    return parallel.put_replicated(_initial_state(run), run.mesh)


def restore_target(run: Run) -> TrainState:
    """What a checkpoint of ``run`` is restored into: :func:`init_state`'s shapes, dtypes and
    replicated shardings, traced rather than computed (a restore overwrites every value, so no
    init program is compiled or run), and a placed PRNG key of the run's key type. A recipe
    whose ``init`` cannot be traced (``Recipe.init_traced=False``) gets :func:`init_state`."""
    if not run.recipe.init_traced:
        return init_state(run)
    sharding = parallel.replicated(run.mesh)
    shapes = jax.eval_shape(lambda: _initial_state(run))
    like = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                        shapes.replace(key=None))
    return like.replace(key=parallel.put_replicated(jax.random.key(0), run.mesh))


def optimizer_and_step(run: Run, *, with_model_state: bool) -> tuple[Any, Callable]:
    """``(tx, step_fn)`` of the run: the recipe's ``train_step`` hook if it has one (e.g. a
    GAN's two players), else ``make_optimizer`` + ``make_train_step`` on the recipe's loss.
    ``init_state`` and ``train`` both call it, so the state is created with the step's ``tx``."""
    cfg = run.config
    kw = dict(prepare=run.space.prepare, compute_dtype=cfg.train.compute_dtype,
              with_model_state=with_model_state)
    if run.recipe.train_step is not None:
        return run.recipe.train_step(cfg, run.module, **kw)
    tx = make_optimizer(cfg.optim, cfg.train.steps)
    return tx, make_train_step(run.loss_fn, tx, ema_decay=cfg.optim.ema_decay, **kw)


def inference_params(run: Run, state: TrainState) -> Any:
    """What sampling and evaluation read from a train state: its EMA parameters, with the
    model-state collections the recipe names in ``Recipe.inference_state`` beside them
    (``{**ema_params, collection: model_state[collection]}``; a VQ-VAE's EMA codebook)."""
    extra = {c: state.model_state[c] for c in run.recipe.inference_state
             if isinstance(state.model_state, dict) and c in state.model_state}
    if not extra:
        return state.ema_params
    clash = sorted(set(extra) & set(state.ema_params))
    if clash:
        raise ValueError(f"model state {clash} has the name of a parameter collection; rename "
                         "one of them (Recipe.inference_state)")
    return {**state.ema_params, **extra}


def heldout_metrics(run: Run, params: Any, *, limit: int = 0) -> dict[str, float]:
    """Mean of the loss metrics over the test split, with a fixed key (deterministic)."""
    cfg = run.config
    # Batch i is prepared (binarized, dequantized) with fold_in(key, i), as in `gmzoo evaluate`,
    # so held-out ELBO and IWAE figures see the same test data.
    key = jax.random.key(cfg.eval.seed)
    loss_key = jax.random.fold_in(jax.random.key(cfg.eval.seed), 2**31 - 1)
    totals: dict[str, float] = {}
    count = 0
    for i, batch in enumerate(ordered_batches(run.test_source, cfg.eval.batch_size, limit)):
        m = jax.device_get(run.heldout_fn(params, batch, jax.random.fold_in(key, i),
                                          jax.random.fold_in(loss_key, i)))
        b = len(batch["label"])
        for k, v in m.items():
            totals[k] = totals.get(k, 0.0) + float(v) * b
        count += b
    return {k: v / count for k, v in totals.items()}


def translate_images(run: Run, params: Any, n: int, seed: int, *, split: str = "test") -> Translation:
    """The first ``n`` examples of ``split`` (all of it if smaller) through an image-to-image
    model: a :class:`~gmzoo.recipes.base.Translation` of ``[n, H, W, C]`` arrays in [0, 1].
    Batch i (``eval.batch_size`` rows) is prepared with ``fold_in(key(seed), i)`` and
    translated with ``fold_in(key(seed + 1), i)``, so a seed gives the same translations."""
    if run.recipe.translate is None:
        raise ConfigError(f"model {run.recipe.name} is not an image-to-image model")
    source = run.test_source if split == "test" else run.train_source
    prep_key, key = jax.random.key(seed), jax.random.key(seed + 1)
    parts = [jax.device_get(jax.tree.map(run.space.to_display,
                                         run.translate_fn(params, batch, jax.random.fold_in(prep_key, i),
                                                          jax.random.fold_in(key, i))))
             for i, batch in enumerate(ordered_batches(source, run.config.eval.batch_size, n))]
    return Translation(*(np.concatenate([np.asarray(p[f]) for p in parts])
                             for f in range(len(Translation._fields))))


def save_samples(run: Run, params: Any, path: str, n: int, seed: int) -> str:
    """A grid of ``n`` samples at ``path``; for an image-to-image model, ``n`` test examples as
    triples source | output | target; for a point set, a scatter plot of ``max(n, 1000)``
    samples over the training points."""
    if run.points:
        return artifacts.save_scatter(path, sample_images(run, params, max(n, 1000), seed),
                                      reference=run.train_source.points)
    if run.recipe.translate is None:
        return artifacts.save_grid(path, sample_images(run, params, n, seed))
    t = translate_images(run, params, n, seed)
    triples = np.stack([t.source, t.output, t.target], axis=1)  # [n, 3, H, W, C]
    per_row = int(np.ceil(np.sqrt(len(triples) / 3)))
    return artifacts.save_grid(path, triples.reshape(-1, *triples.shape[2:]), ncol=3 * per_row)


def sample_images(run: Run, params: Any, n: int, seed: int, *, mean: bool = True) -> np.ndarray:
    """``n`` samples from the model mapped to [0, 1], ``[n, H, W, C]``: the decoder's mean
    (``mean=True``, for grids) or draws from the model's likelihood (for sample metrics). An
    image-to-image model's samples are its outputs on the first ``n`` test examples."""
    if run.recipe.translate is not None:
        return translate_images(run, params, n, seed).output
    key, chunk = jax.random.key(seed), run.recipe.sample_batch
    if not chunk or n <= chunk:
        x = run.sample_fn(mean)(params, key, n)
        return np.asarray(jax.device_get(run.space.to_display(x)))
    # Equal chunks (one compiled sampler), chunk i drawn with fold_in(key, i).
    parts = [run.sample_fn(mean)(params, jax.random.fold_in(key, i), chunk)
             for i in range(-(-n // chunk))]
    return np.asarray(jax.device_get(run.space.to_display(jnp.concatenate(parts)[:n])))


def _prepare_workdir(workdir: str, *, resume: bool, overwrite: bool, verbose: bool = True):
    """Checks and prepares ``workdir`` (:func:`gmzoo.train.workdir.prepare`: the marker, the
    lock, what --resume / --overwrite may touch); returns the locked
    :class:`~gmzoo.train.workdir.Workdir` on process 0, ``None`` on the others."""
    from gmzoo.train import workdir as folder

    lead, many = jax.process_index() == 0, jax.process_count() > 1
    if many:
        # Every process checks the shared workdir before process 0 writes to it, and waits
        # until it has (only process 0 locks, marks and deletes).
        from jax.experimental import multihost_utils

        folder.prepare(workdir, resume=resume, overwrite=overwrite, act=False)
        multihost_utils.sync_global_devices("gmzoo_check_workdir")
    wd = None
    if lead:
        wd = folder.prepare(workdir, resume=resume, overwrite=overwrite,
                            say=print if verbose else (lambda *a: None))
    if many:
        multihost_utils.sync_global_devices("gmzoo_prepare_workdir")
    return wd


def experiment_from_dict(d: dict, table: Table) -> ExperimentConfig:
    """The experiment config saved as JSON in a run, with its family's config classes."""
    if not isinstance(d, dict) or not isinstance(d.get("model"), dict) or "name" not in d["model"]:
        raise ConfigError("the saved config names no model (model.name); it was not written by gmzoo")
    recipe = table(d["model"]["name"])
    return cfglib.experiment_from_dict(d, model_cls=recipe.config_cls, sample_cls=recipe.sample_cls,
                                       eval_cls=recipe.eval_cls)


def _check_resumable(saved: dict, config: ExperimentConfig, table: Table) -> None:
    saved_cfg = experiment_from_dict(saved, table)
    changed = [k for k in cfglib.diff(saved_cfg, config, ignore=RESUMABLE_CHANGES)
               if not k.startswith(RESUMABLE_SECTIONS)]
    if changed:
        desc = "; ".join(f"{k}: saved {cfglib._flatten(saved).get(k)!r}, given "
                         f"{cfglib._flatten(cfglib.to_dict(config)).get(k)!r}" for k in changed)
        raise ConfigError(f"cannot resume with a different config ({desc}); only "
                          f"{', '.join(RESUMABLE_CHANGES)}, eval.* and sample.* may change")


def train(config: ExperimentConfig, workdir: str, table: Table, *, resume: bool = False,
          overwrite: bool = False, devices: list | None = None, verbose: bool = True) -> TrainState:
    """Trains ``config`` in ``workdir`` and returns the final (replicated) train state."""
    run = setup(config, table, devices=devices)
    workdir = os.path.abspath(workdir)
    wd = _prepare_workdir(workdir, resume=resume, overwrite=overwrite, verbose=verbose)
    tcfg = config.train
    lead = jax.process_index() == 0
    say = print if (verbose and lead) else (lambda *a, **k: None)

    from gmzoo.train import workdir as folder

    ckpt_dir = os.path.join(workdir, "checkpoints")
    state = restore_target(run) if resume else init_state(run)  # resume: restored below
    batches = BatchIterator(run.train_source, tcfg.batch_size, seed=tcfg.seed,
                            process_index=jax.process_index(),
                            process_count=jax.process_count())
    step = 0
    if resume:  # the newest intact checkpoint; every refusal comes before any write
        try:
            with Checkpointer(ckpt_dir, read_only=True) as reader:
                got = reader.restore_newest(
                    lambda saved: (_check_resumable(saved, config, table), state)[1],
                    hint=" to resume from; start over with --overwrite")
            if got.step > tcfg.steps:
                raise ConfigError(f"train.steps={tcfg.steps} is below step {got.step} of the "
                                  f"checkpoint in {ckpt_dir}; pass train.steps >= {got.step} "
                                  "(sample or evaluate an earlier step with --step)")
            state, step = got.state, got.step
            batches.set_state(got.data_state)
            if lead:
                wd.resumed(step, [s for s, _ in got.damaged], say)
        except BaseException:
            if wd is not None:
                wd.release()
            raise
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("gmzoo_resumed")  # damaged steps set aside
        say(f"resumed from step {step} in {ckpt_dir}")
    ckpt = Checkpointer(ckpt_dir, keep=tcfg.keep_checkpoints)
    config_dict = cfglib.to_dict(config)
    if lead:  # gmzoo's own file in a marked run: the effective config of this session
        folder.write_json(os.path.join(workdir, "config.json"), config_dict)

    _, step_fn = optimizer_and_step(run, with_model_state=bool(state.model_state))
    run_steps = parallel.compile_steps(scan_steps(step_fn), run.mesh)
    sharding = parallel.batch_sharding(run.mesh)
    log = artifacts.MetricsLog(workdir, enabled=lead)
    samples_dir = os.path.join(workdir, "samples")

    from tqdm.auto import tqdm

    import sys

    bar = tqdm(total=tcfg.steps, initial=step, disable=not (lead and tcfg.progress_bar and verbose),
               dynamic_ncols=True, desc=f"train {config.model.name}",
               mininterval=0.1 if sys.stderr.isatty() else 10.0)  # a log file gets a line per 10 s
    pending: list[tuple[int, Any]] = []  # (first step, stacked metrics) not yet checked
    last_saved = ckpt.latest_step()
    t_last, s_last = time.perf_counter(), step

    def flush() -> dict[str, float]:
        """Fetches pending metrics, stops on a non-finite step, returns their means."""
        nonlocal pending
        fetched = jax.device_get([m for _, m in pending])
        rows = []
        for (first, _), m in zip(pending, fetched):
            bad = np.flatnonzero(~np.asarray(m["finite"]))
            if bad.size:
                where = (f"the last good checkpoint is step {last_saved} in {ckpt.directory}"
                         if last_saved is not None else "no checkpoint was written yet")
                raise NonFiniteError(
                    f"non-finite loss or gradient at step {first + int(bad[0]) + 1}; training "
                    f"stopped; {where} (intact). Lower optim.learning_rate or set "
                    "optim.grad_clip_norm")
            rows.append({k: np.asarray(v, np.float64) for k, v in m.items() if k != "finite"})
        pending = []
        if not rows:
            return {}
        return {k: float(np.mean(np.concatenate([np.atleast_1d(r[k]) for r in rows])))
                for k in rows[0]}

    try:
        while step < tcfg.steps:
            k = min(tcfg.steps_per_call, tcfg.steps - step)
            local = [next(batches) for _ in range(k)]
            stacked = {name: np.stack([b[name] for b in local]) for name in local[0]}
            state, metrics = run_steps(state, parallel.put_batch(stacked, sharding))
            pending.append((step, metrics))
            step += k
            bar.update(k)
            done = step >= tcfg.steps

            def due(every: int) -> bool:
                return done or (every > 0 and step % every < k)

            if due(tcfg.log_every) or due(tcfg.checkpoint_every):
                means = flush()
                now = time.perf_counter()
                means["steps_per_sec"] = (step - s_last) / max(now - t_last, 1e-9)
                t_last, s_last = now, step
                log.write(step, "train", means)
                if "loss" in means:
                    bar.set_postfix(loss=f"{means['loss']:.4g}", it_s=f"{means['steps_per_sec']:.1f}")
            if tcfg.eval_every and due(tcfg.eval_every):
                log.write(step, "eval", heldout_metrics(run, inference_params(run, state)))
            if tcfg.sample_every and due(tcfg.sample_every) and lead:
                save_samples(run, inference_params(run, state), os.path.join(samples_dir, f"step_{step:07d}.png"),
                             64, seed=config.eval.seed)
            if due(tcfg.checkpoint_every):
                ckpt.save(step, state, data_state=batches.get_state(), config=config_dict)
                last_saved = step
        flush()
        ckpt.close()  # waits for the last (asynchronous) save: its I/O errors surface here
        log.close()
        if lead:
            curve = artifacts.save_loss_curve(os.path.join(workdir, "metrics.jsonl"),
                                              os.path.join(workdir, "loss_curve.png"))
            grids = sorted(os.listdir(samples_dir)) if os.path.isdir(samples_dir) else []
            say(f"done: {step} steps of {config.model.name} on {config.data.name}\n"
                f"  checkpoints  {ckpt.directory} (steps {ckpt.all_steps()})\n"
                f"  metrics      {os.path.join(workdir, 'metrics.jsonl')} and {os.path.join(workdir, 'tensorboard')}\n"
                f"  samples      {os.path.join(samples_dir, grids[-1]) if grids else '(none)'}\n"
                f"  loss curve   {curve}\n"
                f"  next         gmzoo evaluate --workdir {workdir}")
    except Exception as e:  # a full disk or another I/O error: one line, the last checkpoint
        ckpt.abort()  # the saves in flight end (or fail) before the checkpoints are listed
        failure = folder.storage_error(e, ckpt_dir, step)
        if failure is None:
            raise
        raise failure from None
    finally:
        bar.close()
        ckpt.abort()
        folder.quietly(log.close)  # closed above unless something failed
        if wd is not None:
            wd.release()
    return state


def load_run(workdir: str, table: Table, *, step: int | None = None,
             overrides: list[str] | None = None) -> tuple[Run, TrainState]:
    """Rebuilds the run saved in ``workdir`` and restores its newest intact (or given)
    checkpoint, read-only: a training still writing there goes on undisturbed."""
    from gmzoo.train import workdir as folder

    ckpt_dir = os.path.join(os.path.abspath(workdir), "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise ConfigError(f"{workdir} holds no checkpoints; train first with "
                          f"`gmzoo train MODEL --workdir {workdir}`")
    runs: dict[str, Run] = {}  # one Run per distinct saved config

    def like(saved: dict) -> TrainState:
        key = json.dumps(saved, sort_keys=True)
        if key not in runs:
            config = experiment_from_dict(saved, table)
            runs[key] = setup(cfglib.override(config, overrides) if overrides else config, table)
        return restore_target(runs[key])

    with Checkpointer(ckpt_dir, read_only=True) as ckpt:
        got = ckpt.restore_newest(like, step=step, hint=folder.busy_hint(workdir))
    return runs[json.dumps(got.config, sort_keys=True)], got.state
