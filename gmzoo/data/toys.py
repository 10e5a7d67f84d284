"""2-D toy distributions, sampled in JAX, and the point sets built from them.

The samplers return float32 [n, 2]; they are jitted with `n` (and `num_modes`) static: each is
one compiled call.

`load_toy(name, split)` gives a fixed data set of one of `TOY_SETS` as a `PointSource`, the same
random-access interface as the image sets (`gmzoo.data.source`): `gmzoo train gan_toy` trains on
`ring8` through the spine like any image model. Train and test splits are drawn once with fixed
keys (10,000 and 2,000 points).

- `ring8`: 8 Gaussians on a circle of radius 2, std 0.05 (Metz et al. 2017).
- `grid25`: 25 Gaussians on the grid {-4, -2, 0, 2, 4}^2, std 0.05 (Dumoulin et al. 2017, ALI;
  Srivastava et al. 2017, VEEGAN; Lin et al. 2018, PacGAN).
- `moons`, `swiss_roll`: no modes; sample quality is the energy distance to the training set.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


def _check_n(n: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")


@functools.partial(jax.jit, static_argnames=("n",))
def moons(key: jax.Array, n: int, noise: float = 0.05) -> jax.Array:
    """Two interleaved half circles (scikit-learn `make_moons` geometry), plus N(0, noise^2).

    Upper moon (cos t, sin t), lower moon (1 - cos t, 0.5 - sin t), t ~ U[0, pi]; the first
    n // 2 points are on the upper moon. Values lie in about [-1, 2] x [-0.5, 1].
    """
    _check_n(n)
    key_t, key_noise = jax.random.split(key)
    t = jax.random.uniform(key_t, (n,), minval=0.0, maxval=math.pi)  # [n]
    upper = jnp.arange(n) < n // 2  # [n]
    x = jnp.where(upper, jnp.cos(t), 1.0 - jnp.cos(t))
    y = jnp.where(upper, jnp.sin(t), 0.5 - jnp.sin(t))
    points = jnp.stack([x, y], axis=-1)  # [n, 2]
    return (points + noise * jax.random.normal(key_noise, (n, 2))).astype(jnp.float32)


def ring_centres(num_modes: int = 8, radius: float = 2.0) -> jax.Array:
    """Mode centres radius * (cos 2 pi k / M, sin 2 pi k / M), k = 0..M-1: float32 [M, 2]."""
    if num_modes < 1:
        raise ValueError(f"num_modes must be >= 1, got {num_modes}")
    angles = 2.0 * math.pi * jnp.arange(num_modes) / num_modes  # [M]
    return radius * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1).astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("n", "num_modes"))
def ring_of_gaussians(
    key: jax.Array, n: int, num_modes: int = 8, radius: float = 2.0, std: float = 0.05
) -> jax.Array:
    """Equal mixture of M isotropic Gaussians N(c_k, std^2 I) at `ring_centres(M, radius)`."""
    _check_n(n)
    key_mode, key_noise = jax.random.split(key)
    modes = jax.random.randint(key_mode, (n,), 0, num_modes)  # [n]
    centres = ring_centres(num_modes, radius)[modes]  # [n, 2]
    return (centres + std * jax.random.normal(key_noise, (n, 2))).astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("n",))
def swiss_roll(key: jax.Array, n: int, noise: float = 0.05) -> jax.Array:
    """2-D swiss roll (t cos t, t sin t) / 5, t ~ U[1.5 pi, 4.5 pi], plus N(0, noise^2).

    The (x, z) plane of scikit-learn's `make_swiss_roll`, scaled by 1/5 into about [-3, 3]^2.
    """
    _check_n(n)
    key_t, key_noise = jax.random.split(key)
    t = 1.5 * math.pi * (1.0 + 2.0 * jax.random.uniform(key_t, (n,)))  # [n]
    points = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=-1) / 5.0  # [n, 2]
    return (points + noise * jax.random.normal(key_noise, (n, 2))).astype(jnp.float32)


def grid_centres(side: int = 5, spacing: float = 2.0) -> jax.Array:
    """Centres of a side x side grid, spacing apart, centred on 0: float32 [side^2, 2], row-major
    (for side 5: {-4, -2, 0, 2, 4}^2)."""
    if side < 1:
        raise ValueError(f"side must be >= 1, got {side}")
    axis = spacing * (jnp.arange(side) - (side - 1) / 2.0)  # [side]
    xs, ys = jnp.meshgrid(axis, axis, indexing="ij")
    return jnp.stack([xs.ravel(), ys.ravel()], axis=-1).astype(jnp.float32)


def _mixture(key: jax.Array, n: int, centres: jax.Array, std: float) -> tuple[jax.Array, jax.Array]:
    """n draws of the equal mixture of N(c_k, std^2 I): (points [n, 2], component [n])."""
    key_mode, key_noise = jax.random.split(key)
    modes = jax.random.randint(key_mode, (n,), 0, centres.shape[0])  # [n]
    points = centres[modes] + std * jax.random.normal(key_noise, (n, centres.shape[1]))
    return points.astype(jnp.float32), modes.astype(jnp.int32)


@dataclasses.dataclass(frozen=True, eq=False)
class PointSource:
    """An in-memory set of 2-D points: items `{"image": float32 [2], "label": int32 []}` (the
    spine's batches call every example "image"; here it is a point). `label` is the mixture
    component (`ring8`, `grid25`) or the moon; `centres` and `std` describe the mixture, for
    mode coverage (None / 0 for sets without modes)."""

    name: str
    points: np.ndarray  # float32 [N, 2]
    labels: np.ndarray  # int32 [N]
    num_classes: int
    centres: np.ndarray | None = None  # float32 [M, 2]
    std: float = 0.0
    num_levels: int = 0  # not quantised

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.points.shape[1:])

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {"image": self.points[index], "label": self.labels[index]}

    def get_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return {"image": self.points[indices], "label": self.labels[indices]}


TOY_SPLITS = {"train": (10_000, 0), "test": (2_000, 1)}  # split -> (size, key)


def _toy(name: str, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array, jax.Array | None, float, int]:
    """(points, labels, centres, std, num_classes) of toy set `name`."""
    if name == "ring8":
        centres, std = ring_centres(8, 2.0), 0.05
        return (*_mixture(key, n, centres, std), centres, std, 8)
    if name == "grid25":
        centres, std = grid_centres(5, 2.0), 0.05
        return (*_mixture(key, n, centres, std), centres, std, 25)
    if name == "moons":
        return moons(key, n), (jnp.arange(n) >= n // 2).astype(jnp.int32), None, 0.0, 2
    return swiss_roll(key, n), jnp.zeros((n,), jnp.int32), None, 0.0, 1


TOY_SETS: tuple[str, ...] = ("ring8", "grid25", "moons", "swiss_roll")


def load_toy(name: str, split: str) -> PointSource:
    """Split "train" (10,000 points) or "test" (2,000) of toy set `name` (one of `TOY_SETS`),
    drawn with a fixed key per set and split."""
    if name not in TOY_SETS:
        raise ValueError(f"unknown toy set {name!r}; choose one of {', '.join(TOY_SETS)}")
    if split not in TOY_SPLITS:
        raise ValueError(f"{name} has splits 'train' and 'test', got {split!r}")
    n, index = TOY_SPLITS[split]
    key = jax.random.fold_in(jax.random.key(TOY_SETS.index(name)), index)
    points, labels, centres, std, k = _toy(name, key, n)
    return PointSource(name=name, points=np.asarray(points, np.float32),
                       labels=np.asarray(labels, np.int32), num_classes=k,
                       centres=None if centres is None else np.asarray(centres, np.float32),
                       std=float(std))
