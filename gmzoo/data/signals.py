"""A 1-D signal set gmzoo generates itself, offline and deterministic: mu-law 8-bit tones.

``tones``: T = 256 samples per example, each a tone with harmonics and an envelope,

    s(t) = A env(t) sum_{k=1..K} r^(k-1) sin(2 pi k f t + phi_k) / Z + sigma eps_t,

with the fundamental f log-uniform in [1/64, 1/8] cycles per sample (periods of 8 to 64
samples), K in {1, 2, 3, 4} harmonics with amplitudes decaying by r ~ U[0.3, 0.8], phases
phi_k ~ U[0, 2 pi), Z the peak of the harmonic sum (so |sum| <= 1), an attack-decay envelope
env(t) (onset t0 ~ U{0..31}, linear attack over a ~ U[2, 32] samples, then exp(-(t - t0 - a) /
tau), tau log-uniform in [32, 512]), peak amplitude A ~ U[0.3, 0.95] and noise sigma = 0.002.
The label is K - 1 (4 classes: the number of harmonics). The signal, clipped to [-1, 1], is
mu-law companded and quantized to 256 levels (Oord et al. 2016, WaveNet, eq. 2):

    f(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu),  mu = 255,  level = round((f(x) + 1) mu / 2).

Splits: train 4,000 / test 1,000 examples, each drawn from ``np.random.default_rng([17, i])``
with i = 0 (train) or 1 (test); the same on every call and every machine with the same numpy.
Items are stored as the image sets store theirs (``gmzoo.data.source.ArraySource``): uint8
levels ``[N, T, 1, 1]`` (H = T time steps, W = C = 1), so the raster order of an "image" is the
time order and the spine's pipeline and the ``levels`` scale take it as they are.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gmzoo.data.source import ArraySource

MU = 255
TONES_LENGTH = 256
TONES_SPLITS = {"train": (4000, 0), "test": (1000, 1)}  # split -> (size, rng stream)
TONES_SEED = 17
TONES_NUM_CLASSES = 4  # label = number of harmonics - 1


def mu_law_encode(x: ArrayLike, mu: int = MU) -> jax.Array:
    """Mu-law levels of ``x`` in [-1, 1] (values outside are clipped): int32 in 0..mu.

    f(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu) (WaveNet eq. 2), then round((f + 1) mu / 2)."""
    x = jnp.clip(jnp.asarray(x, jnp.float32), -1.0, 1.0)
    f = jnp.sign(x) * jnp.log1p(mu * jnp.abs(x)) / math.log1p(mu)  # [-1, 1]
    return jnp.clip(jnp.round((f + 1.0) * (mu / 2.0)), 0, mu).astype(jnp.int32)


def mu_law_decode(levels: ArrayLike, mu: int = MU) -> jax.Array:
    """The inverse of :func:`mu_law_encode` at the level centres: float32 in [-1, 1].

    f = 2 level / mu - 1, x = sign(f) ((1 + mu)^|f| - 1) / mu."""
    f = 2.0 * jnp.asarray(levels, jnp.float32) / mu - 1.0
    return (jnp.sign(f) * jnp.expm1(jnp.abs(f) * math.log1p(mu)) / mu).astype(jnp.float32)


def tone_waveforms(rng: np.random.Generator, n: int,
                   length: int = TONES_LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """``n`` tones as in the module docstring: (float64 [n, length] in [-1, 1], labels int32
    [n]), every random number taken from ``rng``."""
    if n < 1 or length < 1:
        raise ValueError(f"need n >= 1 and length >= 1, got n={n}, length={length}")
    t = np.arange(length, dtype=np.float64)  # [T]
    f0 = np.exp(rng.uniform(np.log(1 / 64), np.log(1 / 8), n))  # [n] cycles per sample
    num_harmonics = rng.integers(1, 5, n)  # [n] in 1..4
    decay = rng.uniform(0.3, 0.8, n)  # [n]
    phases = rng.uniform(0.0, 2 * np.pi, (n, 4))  # [n, 4]
    k = np.arange(1, 5, dtype=np.float64)  # [4]
    amps = decay[:, None] ** (k - 1) * (k <= num_harmonics[:, None])  # [n, 4]
    # harmonics above Nyquist would alias: drop them
    amps = amps * (k * f0[:, None] < 0.5)
    waves = np.sin(2 * np.pi * k[None, :, None] * f0[:, None, None] * t + phases[..., None])
    tone = np.einsum("nk,nkt->nt", amps, waves)  # [n, T]
    tone = tone / np.maximum(np.abs(tone).max(axis=1, keepdims=True), 1e-8)
    onset = rng.integers(0, 32, n)[:, None]  # [n, 1]
    attack = rng.uniform(2.0, 32.0, n)[:, None]
    tau = np.exp(rng.uniform(np.log(32.0), np.log(512.0), n))[:, None]
    since = t - onset  # [n, T]
    env = np.where(since < 0, 0.0,
                   np.where(since < attack, since / attack,
                            np.exp(-(since - attack) / tau)))  # [n, T]
    peak = rng.uniform(0.3, 0.95, n)[:, None]
    noise = 0.002 * rng.standard_normal((n, length))
    signal = np.clip(peak * env * tone + noise, -1.0, 1.0)  # [n, T]
    return signal, (num_harmonics - 1).astype(np.int32)


def make_tones(n: int, seed: int | tuple[int, ...], length: int = TONES_LENGTH) -> ArraySource:
    """``n`` mu-law tones drawn from ``np.random.default_rng(seed)``: images uint8
    ``[n, length, 1, 1]`` (levels 0..255), labels int32 [n] (harmonics - 1)."""
    signal, labels = tone_waveforms(np.random.default_rng(seed), n, length)
    levels = np.asarray(mu_law_encode(signal), np.uint8)  # [n, T]
    images = levels.reshape(n, length, 1, 1)  # [n, T, 1, 1]
    images.flags.writeable = False  # cached and shared: keep them immutable
    labels.flags.writeable = False
    return ArraySource(name="tones", images=images, labels=labels, num_levels=MU + 1,
                       num_classes=TONES_NUM_CLASSES)


@functools.lru_cache(maxsize=None)
def load_tones(split: str) -> ArraySource:
    """The ``tones`` set: uint8 ``[N, 256, 1, 1]``, 256 mu-law levels, 4 classes; train 4,000 /
    test 1,000 (fixed seeds, see the module docstring)."""
    if split not in TONES_SPLITS:
        raise ValueError(f"tones: split must be one of {tuple(TONES_SPLITS)}, got {split!r}")
    n, stream = TONES_SPLITS[split]
    return make_tones(n, (TONES_SEED, stream))
