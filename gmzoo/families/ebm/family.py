"""The energy-based model family on the spine: ``gmzoo train ebm`` (digits) and ``gmzoo train
ebm_toy`` (the 2-D toy sets).

An energy network E_theta (:mod:`gmzoo.families.ebm.networks`) defines p(x) ~ exp(-E(x)); it
is trained by contrastive divergence (:mod:`gmzoo.families.ebm.loss`) with Langevin negatives
(:mod:`gmzoo.samplers.langevin`) started from a replay buffer
(:mod:`gmzoo.families.ebm.buffer`), a share ``model.reinit`` of them from uniform noise on
``model.noise_range``, through the spine's ``make_train_step``. The buffer is the train state's
model state, so it is checkpointed and resumed to the bit:

    params       the energy network's parameters
    model_state  {"buffer": {"x": [buffer_size, ...]}}

- ``ebm`` (Du & Mordatch 2019, IGEBM; the UvA deep-energy tutorial's settings): a conv energy
  on digits in [-1, 1], trained with the decoupled step x <- x - 10 clip(grad E, 0.03) +
  0.005 xi (``model.chain=tempered``), 60 steps, x clipped to [-1, 1]. Its chains sample
  exp(-E / T) at T = 0.005^2 / 20 = 1.25e-6, not exp(-E): the model is a sampler of short, cold
  chains, which is what IGEBM trains. By default every chain starts from noise
  (``model.reinit=1``, the non-persistent short-run chains of Nijkamp et al. 2019), as the
  sampler's do; ``model.reinit=0.05`` is IGEBM's persistent buffer.
- ``ebm_toy``: an MLP energy on ``ring8`` (or ``grid25``, ``moons``, ``swiss_roll``) trained
  with unadjusted Langevin (``model.chain=ula``, T = 1), so exp(-E) itself is the model; the
  report gives its test NLL with log Z by quadrature and draws the energy contours.

The sampler (``gmzoo sample``, the FD/KID and mode-coverage samples of ``gmzoo evaluate``)
runs a chain from fresh uniform noise on ``model.noise_range``, not from the buffer: the
buffer's samples come from thousands of chained steps and would flatter the model. The
``sample`` section picks the chain (``sample.sampler``: ``tempered`` or ``ula``, each named for
what it samples) and its length and step; each setting left at 0 (``noise_scale`` at -1) is
the training chain's. The training chain's clipping (``model.grad_clip``, ``model.clip_x``)
applies to the sampler too. The held-out loss is the CD objective with chains from noise.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gmzoo.config import (ConfigError, DataConfig, EvalConfig, ExperimentConfig, OptimConfig,
                          SampleConfig, TrainConfig, at_least, choice, non_negative, positive)
from gmzoo.data.pipeline import ordered_batches
from gmzoo.families.ebm import buffer as replay
from gmzoo.families.ebm import networks
from gmzoo.samplers import langevin
from gmzoo.families.ebm.loss import contrastive_divergence
from gmzoo.metrics.points import spread_subset
from gmzoo.nn.tree import cast_inputs
from gmzoo.recipes.base import Recipe
from gmzoo.train import artifacts

CONTOUR_GRID = 200  # points per axis of the energy contour plot
QUADRATURE_GRID = 400  # points per axis of the log Z quadrature on point sets
LOG_DENSITY_RANGE = 12.0  # nats of log-density shown below the maximum in the contour plot
# How far each toy set of gmzoo.data.toys reaches, max |coordinate| (centres + 5 std, or the
# curve plus its noise): the chains' noise range must cover it (checked against the data in
# the family's tests).
TOY_EXTENT = {"ring8": 2.25, "grid25": 4.25, "moons": 2.25, "swiss_roll": 3.0}


@dataclasses.dataclass(frozen=True)
class EBMConfig:
    """An energy network trained by contrastive divergence with Langevin negatives.

    Attributes:
      architecture: ``conv`` (images: ``features`` then a dense head ``hidden``) or ``mlp``
        (points or flattened images: dense layers ``hidden``), swish activations.
      alpha: weight of the energy penalty alpha (mean E(x+)^2 + mean E(x-)^2).
      buffer_size, reinit: the replay buffer's size and the share of chains started afresh
        from uniform noise on ``noise_range`` each step (in [0, 1]; 1: no buffer, short-run
        chains from noise).
      chain: the training chain, ``tempered`` (x - step_size grad E + noise_scale xi, samples
        exp(-E / T), T = noise_scale^2 / (2 step_size)) or ``ula`` (x - (step_size / 2) grad E
        + sqrt(step_size) xi, samples exp(-E); ``noise_scale`` unused).
      chain_steps, step_size, noise_scale: its length and step.
      grad_clip: clip each entry of grad E to [-grad_clip, grad_clip] in the chain; 0: none.
      clip_x: clip the chain's x to ``noise_range`` after each step (images: the data range).
    """

    name: str = "ebm"
    architecture: str = choice("conv", "mlp")
    features: tuple[int, ...] = (32, 64, 64)
    hidden: tuple[int, ...] = (128,)
    alpha: float = non_negative(0.1)
    buffer_size: int = positive(10_000)
    reinit: float = non_negative(0.05)
    noise_range: tuple[float, float] = (-1.0, 1.0)
    chain: str = choice("tempered", "ula")
    chain_steps: int = positive(60)
    step_size: float = positive(10.0)
    noise_scale: float = non_negative(0.005)
    grad_clip: float = non_negative(0.03)
    clip_x: bool = True


@dataclasses.dataclass(frozen=True)
class EBMSampleConfig(SampleConfig):
    """Langevin from uniform noise on model.noise_range: sampler tempered (samples exp(-E / T),
    T = noise_scale^2 / (2 step_size)) or ula (samples exp(-E)); "" / 0 / -1: the training
    chain's sampler / steps and step_size / noise_scale. Clipping: the model's."""

    sampler: str = choice("", "tempered", "ula")
    steps: int = non_negative(0)
    step_size: float = non_negative(0.0)
    noise_scale: float = at_least(-1.0, -1)


@dataclasses.dataclass(frozen=True)
class ChainSettings:
    """A resolved Langevin chain: which sampler, and its keyword arguments."""

    sampler: str
    kwargs: dict

    @property
    def temperature(self) -> float:
        """The temperature T of the exp(-E / T) the chain samples (ULA: 1)."""
        if self.sampler == "ula":
            return 1.0
        return langevin.effective_temperature(self.kwargs["step_size"], self.kwargs["noise_scale"])

    def describe(self) -> str:
        kw = ", ".join(f"{k}={v}" for k, v in self.kwargs.items() if v is not None)
        return f"{self.sampler} ({kw}), samples exp(-E/T) at T={self.temperature:.3g}"

    def run(self, energy_fn, key, x0, **kw):
        return langevin.SAMPLERS[self.sampler](energy_fn, key, x0, **self.kwargs, **kw)


def training_chain(m: EBMConfig) -> ChainSettings:
    """The chain of the training negatives."""
    return _settings(m, m.chain, m.chain_steps, m.step_size, m.noise_scale)


def sampling_chain(m: EBMConfig, s: EBMSampleConfig) -> ChainSettings:
    """The sampler's chain: ``s``'s settings, the training chain's where left at 0 / -1."""
    return _settings(m, s.sampler or m.chain, s.steps or m.chain_steps, s.step_size or m.step_size,
                     m.noise_scale if s.noise_scale < 0 else s.noise_scale)


def _settings(m: EBMConfig, sampler: str, steps: int, step_size: float,
              noise_scale: float) -> ChainSettings:
    kw: dict[str, Any] = {"step_size": float(step_size), "num_steps": int(steps),
                          "grad_clip": float(m.grad_clip) if m.grad_clip > 0 else None,
                          "bounds": tuple(float(v) for v in m.noise_range) if m.clip_x else None}
    if sampler == "tempered":
        kw["noise_scale"] = float(noise_scale)
    return ChainSettings(sampler, kw)


# --- checks -------------------------------------------------------------------------------

def _check_chain(settings: ChainSettings, section: str) -> None:
    try:
        langevin.check_settings(**settings.kwargs)
    except ValueError as e:
        raise ConfigError(f"{section} Langevin chain: {e}") from None


def _check(config: ExperimentConfig, image_shape: tuple[int, ...]) -> None:
    m, d, t = config.model, config.data, config.train
    points = len(image_shape) == 1
    error = networks.image_shape_error(tuple(image_shape), m.architecture, tuple(m.features))
    if error:
        raise ConfigError(f"{d.name} inputs {tuple(image_shape)} do not fit model {m.name}: {error}")
    if not m.hidden or any(h < 1 for h in m.hidden):
        raise ConfigError(f"model.hidden={m.hidden} must be one or more positive widths")
    if len(m.noise_range) != 2 or not m.noise_range[0] < m.noise_range[1]:
        raise ConfigError(f"model.noise_range={tuple(m.noise_range)} must be (low, high) with "
                          "low < high")
    if not 0.0 <= m.reinit <= 1.0:
        raise ConfigError(f"model.reinit={m.reinit} must be a share in [0, 1]")
    if t.batch_size > m.buffer_size:
        raise ConfigError(f"train.batch_size={t.batch_size} chains per step need a replay buffer "
                          f"at least as large; model.buffer_size={m.buffer_size}")
    extent = TOY_EXTENT.get(d.name, 0.0) if points else 0.0
    if extent and not (m.noise_range[0] <= -extent and m.noise_range[1] >= extent):
        wide = math.ceil(extent + 0.75)
        raise ConfigError(f"model.noise_range={tuple(m.noise_range)} does not cover {d.name} "
                          f"(coordinates up to {extent} in size): set model.noise_range="
                          f"-{wide},{wide}")
    if not points and (d.binarize != "none" or d.scale != "symmetric"):
        raise ConfigError(f"model {m.name} models images in [-1, 1] (model.noise_range, the "
                          "chain's clipping): set data.binarize=none data.scale=symmetric")
    _check_chain(training_chain(m), "model.*")


def _check_sampling(m: EBMConfig, s: EBMSampleConfig) -> None:
    _check_chain(sampling_chain(m, s), "sample.*")


# --- networks -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EBMNets:
    """What the hooks share: the energy network (a Linen module), the shape of one example
    (``[H, W, C]`` or ``[2]``), and the buffer's size and noise range."""

    energy: Any
    input_shape: tuple[int, ...]
    buffer_size: int
    noise_range: tuple[float, float]

    def energy_fn(self, params: Any):
        """``E(x [B, ...]) -> [B]`` at ``params`` (x cast to the parameters' dtype)."""
        return lambda x: self.energy.apply({"params": params}, *cast_inputs(params, x))

    def noise(self, key: jax.Array, n: int) -> jax.Array:
        """``n`` chain starts, uniform on ``noise_range``: ``[n, *input_shape]``."""
        return replay.uniform_noise(key, (n, *self.input_shape), *self.noise_range)


def _build(m: EBMConfig, image_shape, num_levels) -> EBMNets:
    if m.architecture == "conv":
        energy = networks.ConvEnergy(features=tuple(m.features), head=tuple(m.hidden))
    else:
        energy = networks.MLPEnergy(hidden=tuple(m.hidden))
    return EBMNets(energy, tuple(int(s) for s in image_shape), int(m.buffer_size),
                   tuple(float(v) for v in m.noise_range))


def _init(nets: EBMNets, key: jax.Array, batch: dict) -> dict:
    """The energy's parameters and a replay buffer of noise: ``{"params", "buffer": {"x"}}``
    (the spine keeps ``"buffer"`` as the train state's model state)."""
    param_key, buffer_key = jax.random.split(key)
    params = nets.energy.init(param_key, batch["image"])["params"]
    buf = replay.init_buffer(buffer_key, nets.buffer_size, nets.input_shape, *nets.noise_range)
    return {"params": params, "buffer": {"x": buf}}


def _loss(m: EBMConfig, nets: EBMNets):
    return functools.partial(contrastive_divergence,
                             apply_fn=lambda params, x: nets.energy_fn(params)(x),
                             chain=training_chain(m).run, alpha=m.alpha, reinit=m.reinit,
                             noise_range=nets.noise_range)


def _sampler(m: EBMConfig, nets: EBMNets, *, mean: bool = True, sampling: EBMSampleConfig):
    """``sample(params, key, n) -> [n, ...]``: the sampling chain from uniform noise on
    ``model.noise_range`` (``mean`` changes nothing: a Langevin chain has no mean to show)."""
    chain = sampling_chain(m, sampling)

    def sample(params, key, n):
        start_key, chain_key = jax.random.split(key)
        return chain.run(nets.energy_fn(params), chain_key, nets.noise(start_key, n))

    return sample


# --- report -------------------------------------------------------------------------------

def _energies(run: Any, params: Any, x: np.ndarray, chunk: int = 1000) -> np.ndarray:
    """E(x) ``[N]`` in chunks of ``chunk`` rows (the last one padded: one compiled shape)."""
    energy = _jit_energy(run.module)
    x = np.asarray(x, np.float32)
    out = []
    for i in range(0, len(x), chunk):
        part = x[i:i + chunk]
        padded = np.concatenate([part, np.zeros((chunk - len(part), *part.shape[1:]), part.dtype)])
        out.append(np.asarray(energy(params, jnp.asarray(padded)))[:len(part)])
    return np.concatenate(out)


@functools.lru_cache(maxsize=8)
def _jit_energy(nets: "EBMNets"):
    """``jit(E)`` of an energy network, built once per network."""
    return jax.jit(lambda params, x: nets.energy_fn(params)(x))


def _test_data(run: Any) -> np.ndarray:
    """The test split (at most ``eval.max_examples``) in the data space, as evaluation sees it."""
    cfg = run.config
    key, prepare = jax.random.key(cfg.eval.seed), jax.jit(run.space.prepare)
    return np.concatenate([np.asarray(prepare(b, jax.random.fold_in(key, i))["image"])
                           for i, b in enumerate(ordered_batches(run.test_source, cfg.eval.batch_size,
                                                                 cfg.eval.max_examples))])


def _report(run: Any, params: Any, out_dir: str) -> dict:
    """Mean energies of the test data, the sampler's samples and the noise it starts from; for
    point sets the test NLL of exp(-E) (log Z by quadrature) beside the true density's, and the
    energy contour plot; for images a grid of chains from noise."""
    cfg, m = run.config, run.config.model
    chain = sampling_chain(m, cfg.sample)
    test = _test_data(run)
    n = min(cfg.eval.num_samples, len(test))
    noise = np.asarray(run.module.noise(jax.random.key(cfg.eval.seed + 5), n))
    samples = np.asarray(jax.device_get(run.sample_fn(False)(params, jax.random.key(cfg.eval.seed + 2), n)))
    out: dict[str, Any] = {
        "sampler": f"Langevin from uniform noise on {tuple(m.noise_range)}: {chain.describe()}",
        "training chain": training_chain(m).describe(),
        "mean energy, test data": float(np.mean(_energies(run, params, test))),
        "mean energy, samples": float(np.mean(_energies(run, params, samples))),
        "mean energy, noise (chain starts)": float(np.mean(_energies(run, params, noise)))}
    if run.points:
        out.update(_point_report(run, params, test, samples, out_dir))
    else:
        out["chains from noise"] = _chain_grid(run, params, chain, out_dir)
    return out


def _box(run: Any, margin: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """The training points' bounding box plus ``margin``, widened to hold the noise range."""
    points, (low, high) = run.train_source.points, run.module.noise_range
    lo, hi = points.min(0), points.max(0)
    pad = margin * float(np.max(hi - lo))
    return np.minimum(lo - pad, low), np.maximum(hi + pad, high)


def _grid(lo: np.ndarray, hi: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, ys = np.linspace(lo[0], hi[0], size), np.linspace(lo[1], hi[1], size)
    gx, gy = np.meshgrid(xs, ys)
    return gx, gy, np.stack([gx.ravel(), gy.ravel()], -1).astype(np.float32)  # [size^2, 2]


def _point_report(run: Any, params: Any, test: np.ndarray, samples: np.ndarray,
                  out_dir: str) -> dict:
    src = run.train_source
    lo, hi = _box(run)
    _, _, grid = _grid(lo, hi, QUADRATURE_GRID)
    cell = float(np.prod((hi - lo) / (QUADRATURE_GRID - 1)))
    e_grid = _energies(run, params, grid).astype(np.float64)
    log_z = float(np.logaddexp.reduce(-e_grid) + math.log(cell))
    out: dict[str, Any] = {
        "log Z (quadrature)": f"{log_z:.4f} over the box [{lo[0]:.2f}, {hi[0]:.2f}] x "
                              f"[{lo[1]:.2f}, {hi[1]:.2f}], {QUADRATURE_GRID}^2 points (mass "
                              "outside the box not counted)",
        "test NLL of exp(-E), nats": float(np.mean(_energies(run, params, test)) + log_z)}
    if src.centres is not None:
        out["test NLL of the true mixture, nats"] = float(_mixture_nll(test, src.centres, src.std))
    out["energy contour plot"] = save_energy_contours(
        os.path.join(out_dir, f"ebm_energy_{run.config.data.name}.png"),
        lambda x: _energies(run, params, x), src.points, samples, lo, hi,
        title=f"{run.config.model.name} on {run.config.data.name}")
    return out


def _mixture_nll(x: np.ndarray, centres: np.ndarray, std: float) -> float:
    """-mean log of the equal mixture of N(c_k, std^2 I) at ``x [N, D]``."""
    d2 = np.sum((x[:, None, :] - centres[None]) ** 2, -1)  # [N, K]
    log_p = (np.logaddexp.reduce(-d2 / (2 * std ** 2), axis=1) - math.log(len(centres))
             - 0.5 * x.shape[1] * math.log(2 * math.pi * std ** 2))
    return -float(np.mean(log_p))


def save_energy_contours(path: str, energy_fn, data: np.ndarray, samples: np.ndarray,
                         lo: np.ndarray, hi: np.ndarray, *, title: str = "") -> str:
    """Two panels over the box [lo, hi]: filled contours of E(x) with the training points, and
    the log-density -E(x) + min E (down to ``LOG_DENSITY_RANGE`` nats below its maximum) with
    the samples on top. ``energy_fn(x [N, 2]) -> [N]``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gx, gy, grid = _grid(lo, hi, CONTOUR_GRID)
    e = np.asarray(energy_fn(grid), np.float64).reshape(gx.shape)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), dpi=100)
    levels = np.linspace(np.percentile(e, 0.5), np.percentile(e, 99.5), 25)
    cs = axes[0].contourf(gx, gy, np.clip(e, levels[0], levels[-1]), levels=levels, cmap="viridis")
    axes[0].contour(gx, gy, e, levels=levels[::3], colors="white", linewidths=0.4)
    shown = spread_subset(data, 2000)
    axes[0].scatter(shown[:, 0], shown[:, 1], s=1, c="red", alpha=0.4)
    fig.colorbar(cs, ax=axes[0], label="E(x)")
    axes[0].set_title("energy E(x), training points (red)")
    log_density = np.maximum(e.min() - e, -LOG_DENSITY_RANGE)  # log exp(-E) up to log Z
    im = axes[1].imshow(log_density, origin="lower", extent=(lo[0], hi[0], lo[1], hi[1]),
                        cmap="magma", aspect="auto")
    fig.colorbar(im, ax=axes[1], label="-E(x) + min E (clipped)")
    inside = np.all((samples >= lo) & (samples <= hi), axis=1)
    axes[1].scatter(samples[inside, 0], samples[inside, 1], s=0.5, c="cyan", alpha=0.5)
    axes[1].set_title(f"log exp(-E), samples (cyan; {int((~inside).sum())} outside)")
    for ax in axes:
        ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]))
    fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _chain_grid(run: Any, params: Any, chain: ChainSettings, out_dir: str, rows: int = 10,
                cols: int = 10) -> str:
    """``rows`` chains from noise (one per row), ``cols`` snapshots from start to end."""
    start_key, chain_key = jax.random.split(jax.random.key(run.config.eval.seed + 6))
    x0 = run.module.noise(start_key, rows)
    _, traj = jax.jit(lambda p, k, x: chain.run(run.module.energy_fn(p), k, x,
                                                return_trajectory=True))(params, chain_key, x0)
    steps = np.linspace(0, traj.shape[0] - 1, cols - 1).round().astype(int)
    frames = np.concatenate([np.asarray(x0)[None], np.asarray(traj)[steps]])  # [cols, rows, ...]
    frames = np.asarray(run.space.to_display(jnp.asarray(frames))).transpose(1, 0, 2, 3, 4)
    return artifacts.save_grid(os.path.join(out_dir, "ebm_chains.png"),
                               frames.reshape(-1, *run.image_shape), ncol=cols)


# --- defaults -----------------------------------------------------------------------------

_IGEBM_OPTIM = OptimConfig(optimizer="adam", learning_rate=1e-4, b1=0.0, b2=0.999, ema_decay=0.0)


def _default_images() -> ExperimentConfig:
    # Short-run chains from noise every step (reinit=1; Nijkamp et al. 2019): the sampler runs
    # the same 60 steps from noise, so it draws what training shaped. With IGEBM's persistent
    # buffer (reinit=0.05) the buffer fills with digits while chains from noise do not reach
    # them (FD-digits 70.6 at step 1000 against 5.8 at step 2000 here; README).
    return ExperimentConfig(
        model=EBMConfig(name="ebm", reinit=1.0), data=DataConfig(name="digits", scale="symmetric"),
        optim=_IGEBM_OPTIM,
        train=TrainConfig(steps=2000, batch_size=128, log_every=100, eval_every=0,
                          sample_every=500, checkpoint_every=1000),
        eval=EvalConfig(), sample=EBMSampleConfig())


def _default_points() -> ExperimentConfig:
    model = EBMConfig(name="ebm_toy", architecture="mlp", hidden=(128, 128, 128), alpha=0.01,
                      noise_range=(-3.0, 3.0), chain="ula", chain_steps=50, step_size=1e-3,
                      noise_scale=0.0, grad_clip=0.0, clip_x=False)
    return ExperimentConfig(
        model=model, data=DataConfig(name="ring8"),
        optim=dataclasses.replace(_IGEBM_OPTIM, learning_rate=1e-3),
        train=TrainConfig(steps=3000, batch_size=128, log_every=250, eval_every=0,
                          sample_every=1500, checkpoint_every=1500),
        eval=EvalConfig(), sample=EBMSampleConfig(steps=500))


def _recipe(name: str, description: str, default, samplers: tuple[str, ...],
            tiny: tuple[str, ...]) -> Recipe:
    return Recipe(name=name, description=description, config_cls=EBMConfig, default=default,
                  build=_build, check=_check, init=_init, loss=_loss, sampler=_sampler,
                  samplers=samplers, check_sampling=_check_sampling,
                  data_kinds=("images", "points"), sample_config=EBMSampleConfig,
                  report=_report, tiny=tiny)


RECIPES: tuple[Recipe, ...] = (
    _recipe("ebm", "energy-based model, conv energy, CD with IGEBM-style Langevin negatives "
            "from a replay buffer (digits in [-1, 1])", _default_images, ("tempered", "ula"),
            ("model.features=4,4", "model.hidden=8", "model.buffer_size=64", "model.chain_steps=2")),
    _recipe("ebm_toy", "energy-based model, MLP energy, CD with unadjusted Langevin negatives "
            "(2-D point sets; energy contour plot)", _default_points, ("ula", "tempered"),
            ("model.hidden=8,8", "model.buffer_size=64", "model.chain_steps=2", "sample.steps=2")),
)
