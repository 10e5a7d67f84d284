"""The README's flow and VQ-VAE results, from the runs of ``experiments/flows.sh`` and
``experiments/vqvae.sh``: one row per run (held-out NLL and bits/dim, FD/KID of samples, the
family's own lines: codebook usage, PSNR/SSIM beside the baseline), with steps and training
time on this machine (the sum of the logged intervals' step times: compile and evaluation
excluded), and the figures of sample grids.

    python experiments/issue12_table.py RUNS_DIR... [--figures docs/figures]
"""

from __future__ import annotations

import argparse
import glob
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402


def _latest(pattern: str) -> str | None:
    paths = sorted(glob.glob(pattern))
    return paths[-1] if paths else None


def train_seconds(workdir: str) -> float:
    """Seconds of training: sum over the logged train intervals of steps / (steps/s)."""
    total, last = 0.0, 0
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("split") == "train" and r.get("steps_per_sec"):
                total += (r["step"] - last) / r["steps_per_sec"]
                last = r["step"]
    return total


def row(workdir: str) -> dict | None:
    report = _latest(os.path.join(workdir, "eval", "step_*.json"))
    if report is None:
        return None
    with open(report) as f:
        r = json.load(f)
    with open(os.path.join(workdir, "config.json")) as f:
        cfg = json.load(f)
    out = {"run": os.path.basename(workdir), "model": r["model"], "data": r["data"],
           "steps": r["step"], "minutes": train_seconds(workdir) / 60, "report": r,
           "config": cfg}
    like = r.get("likelihood")
    if like:
        out["nats"], out["bpd"] = like["model"]["nll_nats"], like["model"]["bits_per_dim"]
        out["bound"] = like["model"]["bound"]
        out["others"] = like["models"][1:]
        out["baselines"] = like["baselines"]
    q = r.get("sample_quality", {})
    out["fd"] = next((v for k, v in q.items() if k.startswith("FD-") and "reference" not in k), None)
    out["fd_ref"] = next((v for k, v in q.items() if k.startswith("FD-") and "reference" in k), None)
    out["kid"] = next((v for k, v in q.items() if k.startswith("KID-") and "reference" not in k), None)
    return out


def print_rows(rows: list[dict]) -> None:
    print("| run | steps | train min | NLL nats | bits/dim | FD (ref) | KID | bound |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        fd = "" if r["fd"] is None else f"{r['fd']:.2f} ({r['fd_ref']:.2f})"
        kid = "" if r["kid"] is None else f"{r['kid']:.2f}"
        nats = f"{r['nats']:.2f}" if "nats" in r else ""
        bpd = f"{r['bpd']:.4f}" if "bpd" in r else ""
        print(f"| `{r['run']}` | {r['steps']} | {r['minutes']:.1f} | {nats} | {bpd} | {fd} | "
              f"{kid} | {r.get('bound', '')} |")
        for o in r.get("others", []):
            print(f"|   beside: {o['bound']} | | | {o['nll_nats']:.2f} | "
                  f"{o['bits_per_dim']:.4f} | | | |")
        extra = {k: v for k, v in r["report"].items()
                 if k not in ("model", "data", "step", "heldout", "likelihood",
                              "sample_quality", "sampler")}
        heldout = r["report"].get("heldout", {})
        keep = {k: round(v, 4) for k, v in heldout.items()
                if k in ("recon_nll", "perplexity", "code_usage", "nll_codes", "bits_per_code")}
        if extra or keep:
            print(f"|   {json.dumps({**keep, **extra})} | | | | | | | |")
    if rows and "baselines" in rows[0]:
        for name, b in rows[0]["baselines"].items():
            print(f"| baseline ({rows[0]['data']}): {name} | | | {b['nats']:.2f} | "
                  f"{b['bits_per_dim']:.4f} | | | |")


def figure(panels: list[tuple[str, str]], path: str) -> str:
    """One figure of the sample grids ``[(title, png)]``."""
    cols = min(len(panels), 4)
    n_rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(3 * cols, 3.3 * n_rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, png) in zip(axes.flat, panels):
        ax.imshow(Image.open(png), cmap="gray", interpolation="nearest")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--figures", default="", help="write the sample figures here")
    args = parser.parse_args()
    rows = [r for runs in args.runs for wd in sorted(glob.glob(os.path.join(runs, "*")))
            if os.path.isdir(wd) and (r := row(wd)) is not None]
    for data in sorted({r["data"] for r in rows}):
        print(f"\n{data}")
        print_rows([r for r in rows if r["data"] == data])
    if not args.figures:
        return
    for data in sorted({r["data"] for r in rows}):
        flows = [(f"{r['run']}, T = {t}\n{r['bpd']:.3f} bits/dim", png) for r in rows
                 if r["data"] == data and r["model"] in ("realnvp", "glow")
                 for t in ("0.7", "1.0")
                 if os.path.exists(png := os.path.join(_workdir(args.runs, r["run"]),
                                                       "samples", f"grid_T{t}.png"))]
        if flows:
            print("figure:", figure(flows, os.path.join(args.figures, f"flows_{data}.png")))
        vq = [(f"{r['run']}\n{r['bpd']:.3f} bits/dim, FD {r['fd']:.1f}", png) for r in rows
              if r["data"] == data and r["model"] == "vqvae_prior"
              and (png := _latest(os.path.join(_workdir(args.runs, r["run"]), "samples",
                                               "step_*.png")))]
        if vq:
            print("figure:", figure(vq, os.path.join(args.figures, f"vqvae_prior_{data}.png")))


def _workdir(runs: list[str], name: str) -> str:
    return next(os.path.join(r, name) for r in runs if os.path.isdir(os.path.join(r, name)))


if __name__ == "__main__":
    main()
