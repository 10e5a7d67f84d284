"""Recipes of the Gaussian-mixture family: ``gmm`` (dequantized digits) and ``gmm_toy`` (2-D
point sets), fitted by EM (:mod:`gmzoo.families.gmm.em`) through the spine.

- Data: a mixture is a density, so images must be dequantized (``data.dequantize=true``; the
  evaluator then adds D ln L to the NLL and reports bits/dim of the discrete digits beside the
  per-pixel baseline); the toy point sets are used as they are.
- Init (:func:`gmzoo.families.gmm.kmeans.init_params`) on the first training batch the spine
  passes (``init_batch=0``: ``train.batch_size`` examples): k-means++ seeds, ``model.kmeans_steps``
  Lloyd steps, the clusters' moments. With ``model.whiten=true`` a PCA whitening z = (x - m) V
  diag(lambda)^-1/2 is fitted on that batch first and kept as constants under ``params["frozen"]``
  (never trained: :data:`gmzoo.train.optim.FROZEN`); the mixture models z, and every density
  adds log |det dz/dx| = -1/2 sum log lambda, so it is a density of the data, not of z.
- One training step is one EM iteration on the step's batch (default: the whole training split,
  1,437 digits, 10,000 points; for images with several noise draws, below): the ``train_step``
  hook returns ``optax.identity()`` (EM needs no optimizer) and a step whose ``loss`` is the
  negative mean log-likelihood of the batch *before* the step; ``ema_params`` always equal ``params``. A step whose new parameters are not
  finite (a failed Cholesky factorisation, only possible with ``model.reg_covar=0``) is dropped
  by :func:`gmzoo.train.step.guard` and stops the loop.
- Dequantization noise: EM's guarantee (the log-likelihood never decreases) holds for a fixed
  data set; the points are one (their logged loss never rises). Dequantized images are not: the
  spine prepares every step's batch with the step's key, a fresh draw u of the noise. A single
  fixed draw would make EM monotone, but the components then fit that draw's noise: on digits
  (K = 10, full) EM on one fixed draw reached 83.3 nats/image on it and 68.0 on a new draw, and
  2.87 test bits/dim. So a step sums the sufficient statistics of ``model.noise_draws`` (M)
  fresh draws of the batch's noise: one EM iteration on M B dequantized examples, whose noise
  overfit and step-to-step jitter shrink as M grows (test bits/dim with M = 1, 4, 16, 32: 2.77,
  2.63, 2.59, 2.59; the largest drop of the loss between steps after step 10: 1.1, 0.16, 0.06,
  0.03 nats). The objective is the dequantized E_u log p(x + u); the logged loss is its
  Monte-Carlo estimate on the step's draws, so it may rise by that jitter. Points have no
  noise: one draw. The held-out figures use one fixed draw (the evaluator's key).
- ``gmzoo evaluate`` adds (``report``): log-likelihood, BIC and AIC on the training split
  (BIC = -2 log L + p ln N, AIC = -2 log L + 2 p, p = :func:`~gmzoo.families.gmm.em.num_parameters`;
  the whitening's constants are not counted), a grid of draws and a grid of the component means
  (images) or a scatter plot of draws and means (points), and for points the test
  log-likelihood.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gmzoo.config import (ConfigError, DataConfig, EvalConfig, ExperimentConfig, OptimConfig,
                          TrainConfig, choice, non_negative, positive)
from gmzoo.data.pipeline import ordered_batches
from gmzoo.families.gmm import em, kmeans
from gmzoo.recipes.base import Recipe
from gmzoo.train.step import all_finite
from gmzoo.train import artifacts
from gmzoo.train.optim import FROZEN
from gmzoo.train.step import guard


@dataclasses.dataclass(frozen=True)
class GMMConfig:
    """A mixture of ``num_components`` Gaussians with ``covariance_type`` covariances (as
    scikit-learn's ``GaussianMixture``) plus ``reg_covar`` on their diagonals."""

    name: str = "gmm"
    num_components: int = positive(10)
    covariance_type: str = choice("full", "tied", "diag", "spherical")
    reg_covar: float = non_negative(1e-6)
    whiten: bool = False  # fit the mixture to PCA-whitened data (whitening fitted at init)
    kmeans_steps: int = non_negative(10)  # Lloyd steps after the k-means++ seeding
    seeding_trials: int = non_negative(0)  # greedy k-means++ candidates; 0: 2 + log K
    noise_draws: int = positive(8)  # dequantization draws of each image per EM step (images)


@dataclasses.dataclass(frozen=True)
class GMM:
    """What ``build`` makes of a :class:`GMMConfig`: the mixture's shape and options (the
    parameters live in the train state; the functions are :mod:`~gmzoo.families.gmm.em`'s)."""

    event_shape: tuple[int, ...]  # [H, W, C] of an image, [2] of a point
    num_components: int
    covariance_type: str
    reg_covar: float
    whiten: bool
    kmeans_steps: int
    seeding_trials: int
    noise_draws: int  # 1 for points

    @property
    def dim(self) -> int:
        return math.prod(self.event_shape)


# --- whitening: constants fitted on the first batch -----------------------------------------

def fit_whitening(x: jax.Array, floor: float = 1e-6) -> dict[str, jax.Array]:
    """PCA whitening of x [N, D]: ``{"shift": m [D], "whiten": V diag(lambda^-1/2) [D, D],
    "unwhiten": its inverse [D, D], "log_det": -1/2 sum log lambda}``, lambda the eigenvalues
    of the covariance of x (floored at ``floor`` times the largest)."""
    m = jnp.mean(x, axis=0)
    xc = x - m
    lam, v = jnp.linalg.eigh(xc.T @ xc / x.shape[0])  # [D], [D, D]
    lam = jnp.maximum(lam, floor * jnp.max(lam))
    return {"shift": m, "whiten": v * jax.lax.rsqrt(lam)[None], "unwhiten": (v * jnp.sqrt(lam)).T,
            "log_det": -0.5 * jnp.sum(jnp.log(lam))}


def _to_model(gmm: GMM, params: dict, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Data [B, *event_shape] -> (the mixture's inputs [B, D], log |det| of the map)."""
    x = images.reshape(images.shape[0], -1).astype(jnp.float32)  # [B, D]
    if not gmm.whiten:
        return x, jnp.zeros((), x.dtype)
    f = params[FROZEN]
    return (x - f["shift"]) @ f["whiten"], f["log_det"]


def log_likelihood(gmm: GMM, params: dict, images: jax.Array) -> jax.Array:
    """log p(x) [B] in nats of data [B, *event_shape] (whitening's log-determinant counted)."""
    x, log_det = _to_model(gmm, params, images)
    return em.log_prob(params["mixture"], x, gmm.covariance_type) + log_det


# --- the recipe hooks ------------------------------------------------------------------------

def _check(config: ExperimentConfig, image_shape: tuple[int, ...]) -> None:
    m, d, t = config.model, config.data, config.train
    points = len(image_shape) == 1
    if not points and (d.binarize != "none" or not d.dequantize):
        raise ConfigError(f"model {m.name} is a density of continuous data: set "
                          "data.dequantize=true and data.binarize=none")
    if m.num_components > t.batch_size:
        raise ConfigError(f"model.num_components={m.num_components} is larger than the "
                          f"{t.batch_size} examples of a training batch (train.batch_size) that "
                          f"EM and k-means++ fit; use at most {t.batch_size} components")
    dim = math.prod(image_shape)
    if m.whiten and t.batch_size <= dim:
        raise ConfigError(f"model.whiten=true fits a {dim}x{dim} covariance on the first batch: "
                          f"train.batch_size={t.batch_size} must be larger than {dim}")
    if t.compute_dtype != "float32":
        raise ConfigError(f"train.compute_dtype={t.compute_dtype}: EM runs in float32 (a "
                          "covariance's Cholesky factor in bfloat16 is not positive definite)")


def _build(m: GMMConfig, image_shape, num_levels) -> GMM:
    shape = tuple(int(s) for s in image_shape)
    return GMM(shape, m.num_components, m.covariance_type, m.reg_covar, m.whiten, m.kmeans_steps,
               m.seeding_trials, noise_draws=1 if len(shape) == 1 else m.noise_draws)


def _init(gmm: GMM, key: jax.Array, batch: dict) -> dict:
    """k-means++ (and the whitening) on the first training batch: ``{"params": ...}``."""
    x = jnp.asarray(batch["image"], jnp.float32).reshape(len(batch["image"]), -1)  # [B, D]
    params: dict[str, Any] = {}
    if gmm.whiten:
        params[FROZEN] = jax.jit(fit_whitening)(x)
        x, _ = _to_model(gmm, params, x)
    params["mixture"] = kmeans.init_params(
        key, x, gmm.num_components, gmm.covariance_type, reg_covar=gmm.reg_covar,
        num_steps=gmm.kmeans_steps, num_trials=gmm.seeding_trials)
    if not bool(all_finite(params)):
        raise ConfigError("the k-means++ initialisation gave a covariance that is not positive "
                          f"definite; raise model.reg_covar (now {gmm.reg_covar}) or lower "
                          f"model.num_components (now {gmm.num_components})")
    return {"params": params}


def _train_step(config: ExperimentConfig, gmm: GMM, *, prepare, compute_dtype,
                with_model_state) -> tuple[optax.GradientTransformation, Callable]:
    """``(optax.identity(), step_fn)``: one EM iteration per step (see the module docstring)."""
    del compute_dtype, with_model_state  # float32 only (checked); no model state

    def statistics(params, batch, key):
        """E-step on one draw of the batch's dequantization noise."""
        x, log_det = _to_model(gmm, params, prepare(batch, key)["image"])
        return em.sufficient_statistics(params["mixture"], x, gmm.covariance_type), log_det

    def step_fn(state, batch, key):
        stats, log_det = statistics(state.params, batch, jax.random.fold_in(key, 0))

        def add_draw(total, j):  # one draw at a time: the memory of one E-step
            return em.add_statistics(total, statistics(state.params, batch,
                                                       jax.random.fold_in(key, j))[0]), None

        if gmm.noise_draws > 1:
            stats, _ = jax.lax.scan(add_draw, stats, jnp.arange(1, gmm.noise_draws))
        mixture = em.m_step(stats, gmm.covariance_type, gmm.reg_covar)
        ll = stats.log_likelihood / (gmm.noise_draws * batch["image"].shape[0])
        finite = all_finite(mixture) & jnp.isfinite(ll)
        params = {**state.params, "mixture": mixture}
        state = guard(finite, lambda s: s.replace(params=params, ema_params=params), state)
        return state.replace(step=state.step + 1), {"loss": -(ll + log_det), "finite": finite}

    return optax.identity(), step_fn


def _loss(m: GMMConfig, gmm: GMM) -> Callable:
    """Held-out ``loss_fn(params, batch, key) -> (-mean log p(x), {})`` (nats per example)."""

    def loss_fn(params, batch, key):
        del key
        return -jnp.mean(log_likelihood(gmm, params, batch["image"])), {}

    return loss_fn


def _sampler(m: GMMConfig, gmm: GMM, *, mean: bool = True, sampling=None) -> Callable:
    """``sample(params, key, n) -> [n, *event_shape]``: draws of the mixture, or with ``mean``
    the mean of each draw's component (the grids during training)."""
    del sampling

    def sample(params, key, n):
        z, _ = em.sample(params["mixture"], key, n, gmm.covariance_type, mean=mean)  # [n, D]
        if gmm.whiten:
            f = params[FROZEN]
            z = z @ f["unwhiten"] + f["shift"]
        return z.reshape(n, *gmm.event_shape)

    return sample


def _likelihoods(m: GMMConfig, gmm: GMM, eval_cfg) -> dict[str, Callable]:
    """``{"exact": fn(params, x, key) -> log p(x) [B]}``: the mixture's density is exact."""
    return {"exact": lambda params, x, key: log_likelihood(gmm, params, x)}


def _report(run, params: dict, out_dir: str) -> dict:
    """Log-likelihood, BIC and AIC on the training split; sample and means figures."""
    gmm, cfg = run.module, run.config
    key = jax.random.key(cfg.eval.seed)  # the evaluator's preparation of batch i
    ll_fn = jax.jit(lambda p, b, k: log_likelihood(gmm, p, run.space.prepare(b, k)["image"]))

    def total(source) -> tuple[float, int]:
        lls = [np.asarray(ll_fn(params, b, jax.random.fold_in(key, i)), np.float64)
               for i, b in enumerate(ordered_batches(source, cfg.eval.batch_size))]
        return float(np.sum(np.concatenate(lls))), sum(len(a) for a in lls)

    ll, n = total(run.train_source)
    p = em.num_parameters(gmm.covariance_type, gmm.num_components, gmm.dim)
    what = "points" if run.points else "dequantized images, nats"
    out: dict[str, Any] = {
        f"train log-likelihood ({what} per example)": ll / n,
        "free parameters p": p, "training examples N": n,
        f"BIC = -2 log L + p ln N (train, {what})": -2.0 * ll + p * math.log(n),
        f"AIC = -2 log L + 2 p (train, {what})": -2.0 * ll + 2.0 * p}
    if run.points:
        test_ll, m = total(run.test_source)
        out["test log-likelihood (nats per point)"] = test_ll / m
    sample = jax.jit(_sampler(cfg.model, gmm, mean=False), static_argnums=2)
    draws = np.asarray(run.space.to_display(sample(params, jax.random.key(cfg.eval.seed + 6), 1000)))
    mix = params["mixture"]
    order = np.argsort(-np.asarray(mix["weights"]))
    means = mix["means"][order]
    if gmm.whiten:
        means = means @ params[FROZEN]["unwhiten"] + params[FROZEN]["shift"]
    means = np.asarray(run.space.to_display(means.reshape(-1, *gmm.event_shape)))
    if run.points:
        out["figure: draws (black) over the training set"] = artifacts.save_scatter(
            os.path.join(out_dir, "gmm_samples.png"), draws, reference=run.train_source.points)
        out["figure: component means (black)"] = artifacts.save_scatter(
            os.path.join(out_dir, "gmm_means.png"), means, reference=run.train_source.points)
    else:
        out["figure: 64 draws"] = artifacts.save_grid(os.path.join(out_dir, "gmm_samples.png"),
                                                       draws[:64])
        out["figure: component means, heaviest first"] = artifacts.save_grid(
            os.path.join(out_dir, "gmm_means.png"), means[:100])
    return out


# --- defaults -----------------------------------------------------------------------------------

def _experiment(model: GMMConfig, data: DataConfig, batch_size: int) -> Callable[[], ExperimentConfig]:
    train = TrainConfig(steps=100, batch_size=batch_size, log_every=10, eval_every=100,
                        sample_every=100, checkpoint_every=100)
    return lambda: ExperimentConfig(model=model, data=data, train=train,
                                    optim=OptimConfig(ema_decay=0.0), eval=EvalConfig())


def _recipe(name: str, description: str, model: GMMConfig, data: DataConfig,
            batch_size: int) -> Recipe:
    return Recipe(name=name, description=description, config_cls=GMMConfig,
                  default=_experiment(model, data, batch_size), build=_build, check=_check,
                  init=_init, init_batch=0, init_traced=False, loss=_loss, sampler=_sampler,
                  likelihoods=_likelihoods, train_step=_train_step, report=_report,
                  data_kinds=("images", "points"),
                  tiny=("model.num_components=3", "model.noise_draws=2", "model.kmeans_steps=2"))


RECIPES: tuple[Recipe, ...] = (
    _recipe("gmm", "Gaussian mixture by EM (K = 10, full covariances) on dequantized digits",
            GMMConfig(name="gmm"), DataConfig(name="digits", dequantize=True), 1437),
    _recipe("gmm_toy", "Gaussian mixture by EM (K = 8, full covariances) on 2-D point sets (ring8)",
            GMMConfig(name="gmm_toy", num_components=8), DataConfig(name="ring8"), 10_000),
)
