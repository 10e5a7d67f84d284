"""The README's autoregressive results table and sample figure, from the runs of
``experiments/autoregressive.sh``: held-out NLL (nats) and bits/dim of every model on each data
set, with steps, epochs and training time on this machine, and one figure per data set tiling
the 64-sample grid of each model at its last step.

    python experiments/autoregressive_table.py RUNS_DIR [--figures docs/figures]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

MODELS = ("fvsbn", "nade", "made", "pixelcnn", "gated_pixelcnn", "pixelrnn", "pixelrnn_diagonal",
          "wavenet", "transformer")
TRAIN_SIZE = {"mnist5k": 4000, "digits": 1437}


def _latest(pattern: str) -> str | None:
    paths = sorted(glob.glob(pattern))
    return paths[-1] if paths else None


def row(runs: str, data: str, model: str) -> dict | None:
    workdir = os.path.join(runs, data, model)
    report = _latest(os.path.join(workdir, "eval", "step_*.json"))
    if report is None:
        return None
    with open(report) as f:
        r = json.load(f)
    with open(os.path.join(workdir, "config.json")) as f:
        cfg = json.load(f)
    wall = None
    if os.path.exists(workdir + ".time"):
        with open(workdir + ".time") as f:
            m = re.search(r"wall ([0-9.]+) s", f.read())
            wall = float(m.group(1)) if m else None
    steps, batch = cfg["train"]["steps"], cfg["train"]["batch_size"]
    like = r["likelihood"]
    return {"model": model, "steps": steps, "epochs": steps * batch / TRAIN_SIZE[data],
            "nats": like["model"]["nll_nats"], "bpd": like["model"]["bits_per_dim"],
            "baselines": like["baselines"], "wall": wall,
            "grid": _latest(os.path.join(workdir, "samples", "step_*.png")),
            "model_cfg": {k: v for k, v in cfg["model"].items() if k not in ("name",)}}


def table(runs: str, data: str) -> list[dict]:
    rows = [r for m in MODELS if (r := row(runs, data, m)) is not None]
    if not rows:
        return rows
    print(f"\n{data}: held-out NLL, exact")
    print("| model | nats | bits/dim | steps (epochs) | train time |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        wall = "" if r["wall"] is None else f"{r['wall'] / 60:.1f} min"
        print(f"| `{r['model']}` | {r['nats']:.2f} | {r['bpd']:.4f} | {r['steps']} "
              f"({r['epochs']:.0f}) | {wall} |")
    for name, b in rows[0]["baselines"].items():
        print(f"| baseline: {name} | {b['nats']:.2f} | {b['bits_per_dim']:.4f} | | |")
    return rows


def figure(rows: list[dict], data: str, out_dir: str) -> str:
    with_grids = [r for r in rows if r["grid"]]
    cols = min(len(with_grids), 5)
    n_rows = -(-len(with_grids) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(3 * cols, 3.3 * n_rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, r in zip(axes.flat, with_grids):
        ax.imshow(Image.open(r["grid"]), cmap="gray", interpolation="nearest")
        ax.set_title(f"{r['model']}\n{r['nats']:.1f} nats, {r['bpd']:.3f} bits/dim", fontsize=9)
    fig.tight_layout()
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"autoregressive_{data}.png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs")
    parser.add_argument("--figures", default="", help="write one sample figure per data set here")
    args = parser.parse_args()
    for data in ("mnist5k", "digits"):
        rows = table(args.runs, data)
        if rows and args.figures:
            print("figure:", figure(rows, data, args.figures))


if __name__ == "__main__":
    main()
