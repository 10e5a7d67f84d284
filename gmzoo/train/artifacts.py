"""What a run leaves in its workdir besides checkpoints: metrics logs and PNG images."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np
from PIL import Image


def image_grid(images01: np.ndarray, *, ncol: int | None = None, pad: int = 1,
               scale: int = 0) -> np.ndarray:
    """Tiles ``[N, H, W, C]`` images in [0, 1] into one uint8 ``[H', W', C]`` grid."""
    images01 = np.clip(np.asarray(images01, np.float32), 0.0, 1.0)
    n, h, w, c = images01.shape
    ncol = ncol or int(math.ceil(math.sqrt(n)))
    nrow = int(math.ceil(n / ncol))
    grid = np.ones((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), np.float32)
    for i in range(n):
        r, col = divmod(i, ncol)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = images01[i]
    grid = (grid * 255 + 0.5).astype(np.uint8)
    scale = scale or max(1, 256 // max(h, w) // 2)
    return np.kron(grid, np.ones((scale, scale, 1), np.uint8)) if scale > 1 else grid


def save_grid(path: str, images01: np.ndarray, **kwargs: Any) -> str:
    grid = image_grid(images01, **kwargs)
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    img.save(path)
    return path


def scatter_plot(points: np.ndarray, *, reference: np.ndarray | None = None, size: int = 512,
                 margin: float = 0.05) -> np.ndarray:
    """2-D ``points [N, 2]`` drawn as black 2x2 dots on a white uint8 ``[size, size]`` canvas,
    over ``reference [M, 2]`` (e.g. the training set) in light grey; the view is the bounding
    square of the reference (else of the points) plus ``margin``, and points outside it are
    left out (so a diverged generator shows as an empty plot, not a squashed one). x grows to
    the right, y upwards."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    frame = points if reference is None else np.asarray(reference, np.float64).reshape(-1, 2)
    frame = frame[np.all(np.isfinite(frame), axis=1)]
    lo, hi = (frame.min(0), frame.max(0)) if len(frame) else (np.zeros(2), np.ones(2))
    centre, half = (lo + hi) / 2, max(float(np.max(hi - lo)) / 2, 1e-6) * (1 + 2 * margin)
    canvas = np.full((size, size), 255, np.uint8)

    def draw(xy: np.ndarray, value: int) -> None:
        xy = xy[np.all(np.isfinite(xy), axis=1)]
        pix = np.floor((xy - centre + half) / (2 * half) * (size - 2)).astype(np.int64)  # [n, 2]
        keep = np.all((pix >= 0) & (pix <= size - 2), axis=1)
        col, row = pix[keep, 0], (size - 2) - pix[keep, 1]
        for dr in (0, 1):
            for dc in (0, 1):
                canvas[row + dr, col + dc] = value

    if reference is not None:
        draw(np.asarray(reference, np.float64).reshape(-1, 2), 200)
    draw(points, 0)
    return canvas


def save_scatter(path: str, points: np.ndarray, **kwargs: Any) -> str:
    """:func:`scatter_plot` as a PNG at ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(scatter_plot(points, **kwargs)).save(path)
    return path


class MetricsLog:
    """Appends metrics to ``metrics.jsonl`` and TensorBoard events (tensorboardX)."""

    def __init__(self, workdir: str, *, enabled: bool = True):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.enabled = enabled
        self._tb = None
        if enabled:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, split: str, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), "split": split, **{k: float(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        for k, v in metrics.items():
            self._tb.add_scalar(f"{split}/{k}", float(v), int(step))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def save_loss_curve(metrics_path: str, out_path: str, key: str = "loss") -> str | None:
    """Plots train (and held-out, if logged) ``key`` against step into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path) if os.path.exists(metrics_path) else []
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for split in ("train", "eval"):
        pts = [(r["step"], r[key]) for r in rows if r["split"] == split and key in r]
        if pts:
            s, v = zip(*sorted(dict(pts).items()))
            ax.plot(s, v, label=split, marker="o" if split == "eval" else None)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
    return out_path
