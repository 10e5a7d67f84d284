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
