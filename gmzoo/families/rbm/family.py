"""The RBM family on the spine: ``gmzoo train rbm`` (CD-k) and ``gmzoo train rbm_pcd`` (PCD-k).

A Bernoulli-Bernoulli RBM (:mod:`gmzoo.families.rbm.rbm`) on binarized images (``mnist5k`` or
``digits`` with ``data.binarize=dynamic`` or ``fixed``; anything else is refused). Training
minimises the free-energy gap mean F(v_data) - mean F(v_model), whose gradient is the CD / PCD
estimate of the NLL's gradient, with the spine's ``make_train_step``; PCD's persistent chains
are the ``"chains"`` collection, i.e. the train state's ``model_state``:

    params       {"W": [V, H], "b": [V], "c": [H]}
    model_state  {"chains": {"v": [num_chains, V]}}        (rbm_pcd only)

The logged ``loss`` is that free-energy gap (it may be negative and is not a likelihood); the
metrics add F of the data and of the model samples and the mean-field reconstruction error.

``gmzoo evaluate`` reports the held-out NLL through ``likelihoods``: ``AIS (...)`` = mean F(v)
+ log Z-hat, log Z-hat by annealed importance sampling (:mod:`gmzoo.families.rbm.partition`)
from a base-rate RBM with the evaluated batch's marginals (the hook sees no training data; any
fixed base gives a consistent estimate), and ``exact`` when the smaller layer has at most 20
units. The family's report lines repeat AIS from the *training* marginals with a different key
(an independent second estimate) and give what the table cannot: the standard error of log
Z-hat and of the NLL, the 3-sd interval, the effective sample size, the training-split NLL (the
overfitting gap), and the filters of the first hidden units as an image.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gmzoo.config import (ConfigError, DataConfig, EvalConfig, ExperimentConfig, OptimConfig,
                          SampleConfig, TrainConfig, at_least, choice, non_negative, positive)
from gmzoo.data.pipeline import ordered_batches
from gmzoo.families.rbm import partition
from gmzoo.families.rbm import rbm
from gmzoo.recipes.base import Recipe
from gmzoo.train import artifacts

EXACT_UNITS = 20  # the report and likelihoods add the exact NLL up to 2^20 enumerated states


@dataclasses.dataclass(frozen=True)
class RBMConfig:
    """A Bernoulli-Bernoulli RBM trained by CD-k (``method=cd``) or PCD-k (``method=pcd``)."""

    name: str = "rbm"
    num_hidden: int = positive(500)
    method: str = choice("cd", "pcd")
    gibbs_steps: int = positive(10)  # k: Gibbs steps of the negative phase per update
    num_chains: int = positive(100)  # PCD: persistent chains (model_state)
    init_scale: float = non_negative(0.01)  # W ~ N(0, init_scale^2); b from the data marginals


@dataclasses.dataclass(frozen=True)
class RBMSampleConfig(SampleConfig):
    """The Gibbs sampler: ``gibbs_steps`` block steps from ``start``: ``bias`` (v ~
    Bernoulli(sigmoid(b)), the visible biases, initialised at the data's base rates) or
    ``uniform`` (Bernoulli(1/2)). Grids show p(v = 1 | h) of the last step, metrics a draw."""

    gibbs_steps: int = positive(1000)
    start: str = choice("bias", "uniform")


@dataclasses.dataclass(frozen=True)
class RBMEvalConfig(EvalConfig):
    """AIS of log Z: ``ais_chains`` chains over ``ais_betas`` temperatures spaced as in
    Salakhutdinov & Murray (2008) (:func:`~gmzoo.families.rbm.partition.ais_betas`). The
    likelihood table estimates log Z once per evaluation batch: ``batch_size`` 1000 holds the
    whole mnist5k test split (one AIS run)."""

    batch_size: int = positive(1000)
    ais_chains: int = at_least(100, 2)
    ais_betas: int = at_least(14500, 3)


def _check(config: ExperimentConfig, image_shape: tuple[int, ...]) -> None:
    if config.data.binarize not in ("fixed", "dynamic"):
        raise ConfigError(f"model {config.model.name} is a Bernoulli-Bernoulli RBM of binary "
                          f"data, and data.binarize={config.data.binarize!r} gives grey levels; "
                          "set data.binarize=dynamic or data.binarize=fixed")


def _build(m: RBMConfig, image_shape, num_levels) -> rbm.RBM:
    return rbm.RBM(num_visible=int(np.prod(image_shape)), num_hidden=m.num_hidden,
                   init_scale=m.init_scale, num_chains=m.num_chains if m.method == "pcd" else 0,
                   image_shape=tuple(image_shape))


def _init(module: rbm.RBM, key: jax.Array, batch: dict) -> dict:
    """Parameters (b from the batch's marginals) and, for PCD, the chains (:class:`rbm.RBM`)."""
    return module.init(key, batch["image"])


def _loss(m: RBMConfig, module: rbm.RBM):
    if m.method == "pcd":
        return functools.partial(rbm.pcd_loss, k=m.gibbs_steps)
    return functools.partial(rbm.cd_loss, k=m.gibbs_steps)


def _sampler(m: RBMConfig, module: rbm.RBM, *, mean: bool = True, sampling: RBMSampleConfig):
    """``sample(params, key, n) -> [n, H, W, 1]``: p(v = 1 | h) of the last Gibbs step
    (``mean``) or the binary state."""

    def sample(params, key, n):
        start_key, chain_key = jax.random.split(key)
        logits = params["b"] if sampling.start == "bias" else jnp.zeros_like(params["b"])
        v0 = rbm.sample_bernoulli(start_key, jnp.broadcast_to(logits, (n, module.num_visible)))
        v, prob = rbm.gibbs_sample(params, chain_key, v0, num_steps=sampling.gibbs_steps)
        return (prob if mean else v).reshape(n, *module.image_shape)

    return sample


def _ais_label(e: RBMEvalConfig) -> str:
    return f"AIS ({e.ais_chains} chains, {e.ais_betas} betas)"


def _likelihoods(m: RBMConfig, module: rbm.RBM, e: RBMEvalConfig) -> dict:
    """log p(x) = -F(x) - log Z: by AIS (base: the batch's marginals), and exactly when the
    smaller layer is small enough to enumerate (then the headline)."""
    betas = partition.ais_betas(e.ais_betas)

    def ais_log_likelihood(params, x, key):
        v = rbm.flatten(x)
        res = partition.ais(params, key, rbm.base_rate_logits(v), betas, e.ais_chains)
        return -rbm.free_energy(params, v) - res.log_z

    def exact_log_likelihood(params, x, key):
        return -rbm.free_energy(params, rbm.flatten(x)) - partition.log_partition_exact(params)

    out = {}
    if min(module.num_visible, module.num_hidden) <= EXACT_UNITS:
        out["exact"] = exact_log_likelihood
    out[_ais_label(e)] = ais_log_likelihood
    return out


def data_split(run: Any, source: Any, limit: int = 0) -> jax.Array:
    """A split in the run's data space ``[N, V]``, batch i of ``eval.batch_size`` prepared with
    ``fold_in(key(eval.seed), i)``: the binarization ``gmzoo evaluate`` scores."""
    key, prepare = jax.random.key(run.config.eval.seed), jax.jit(run.space.prepare)
    parts = [prepare(b, jax.random.fold_in(key, i))["image"]
             for i, b in enumerate(ordered_batches(source, run.config.eval.batch_size, limit))]
    return rbm.flatten(jnp.concatenate(parts))


def ais_nll(params: dict, train_v: jax.Array, test_v: jax.Array, e: RBMEvalConfig) -> dict:
    """log Z by AIS from the base-rate RBM of ``train_v``'s marginals (key ``eval.seed + 7``)
    and the NLL of both splits with its standard error: the report's figures, also used to
    score other RBMs (scikit-learn's) the same way."""
    ais = jax.jit(partition.ais, static_argnums=4)
    res = ais(params, jax.random.key(e.seed + 7), rbm.base_rate_logits(train_v),
              partition.ais_betas(e.ais_betas), e.ais_chains)
    test = partition.heldout_nll(params, test_v, res.log_z, res.log_z_se)
    train = partition.heldout_nll(params, train_v, res.log_z, res.log_z_se)
    out = {
        "log Z estimate": f"AIS, base from the training marginals ({e.ais_chains} chains, "
                          f"{e.ais_betas} betas)",
        "log Z (AIS)": float(res.log_z),
        "log Z standard error (AIS, over chains)": float(res.log_z_se),
        "log Z - 3 sd (AIS)": float(res.log_z_lower),
        "log Z + 3 sd (AIS)": float(res.log_z_upper),
        "AIS effective sample size": float(res.ess),
        "test NLL nats (AIS)": float(test.nll),
        "test NLL standard error nats": float(test.se),
        "train NLL nats (AIS)": float(train.nll),
    }
    if min(params["W"].shape) <= EXACT_UNITS:
        log_z = partition.log_partition_exact(params)
        out["log Z (exact)"] = float(log_z)
        out["test NLL nats (exact)"] = float(partition.heldout_nll(params, test_v, log_z).nll)
    return out


def _report(run: Any, params: dict, out_dir: str) -> dict:
    """:func:`ais_nll` of the run's splits, what the training loss is, and a grid of the first
    100 filters (each scaled to [0, 1])."""
    cfg = run.config
    out = ais_nll(params, data_split(run, run.train_source),
                  data_split(run, run.test_source, cfg.eval.max_examples), cfg.eval)
    out["training loss"] = (f"{cfg.model.method.upper()}-{cfg.model.gibbs_steps} free-energy gap "
                            "(not a likelihood)")
    filters = np.asarray(jax.device_get(params["W"][:, :100])).T  # [<=100, V]
    lo, hi = filters.min(axis=1, keepdims=True), filters.max(axis=1, keepdims=True)
    filters = ((filters - lo) / np.maximum(hi - lo, 1e-8)).reshape(-1, *run.image_shape)
    out["filters"] = artifacts.save_grid(os.path.join(out_dir, "rbm_filters.png"), filters)
    return out


_DATA = DataConfig(name="mnist5k", binarize="dynamic")
_OPTIM = OptimConfig(optimizer="adam", learning_rate=1e-3, ema_decay=0.0)
_TRAIN = TrainConfig(steps=5000, batch_size=100, log_every=250, eval_every=0, sample_every=2500,
                     checkpoint_every=2500)


def _default(model: RBMConfig):
    return lambda: ExperimentConfig(model=model, data=_DATA, optim=_OPTIM, train=_TRAIN,
                                    eval=RBMEvalConfig(), sample=RBMSampleConfig())


def _recipe(name: str, description: str, model: RBMConfig) -> Recipe:
    return Recipe(name=name, description=description, config_cls=RBMConfig,
                  default=_default(model), build=_build, check=_check,
                  init=_init, loss=_loss, sampler=_sampler,
                  likelihoods=_likelihoods, report=_report, init_batch=0,
                  sample_config=RBMSampleConfig, eval_config=RBMEvalConfig)


RECIPES: tuple[Recipe, ...] = (
    _recipe("rbm", "restricted Boltzmann machine (binary), CD-10; held-out NLL by AIS",
            RBMConfig(name="rbm")),
    _recipe("rbm_pcd", "restricted Boltzmann machine (binary), PCD-1 (persistent chains)",
            RBMConfig(name="rbm_pcd", method="pcd", gibbs_steps=1)),
)

# Tiny variants (tests, smoke runs): the contract test over the model table trains each row so.
RECIPES = tuple(dataclasses.replace(r, tiny=(
    "model.num_hidden=8", "model.num_chains=16", "sample.gibbs_steps=5", "eval.ais_chains=4",
    "eval.ais_betas=20")) for r in RECIPES)
