"""``gmzoo evaluate``: likelihood and sample quality of a trained run, beside baselines.

Every likelihood figure is printed beside two baselines computed in the same run (a uniform model
and an independent per-pixel model fitted on the training split), and every Frechet distance
beside the distance of held-out real data to the training data, so a reader can tell a good
number from a bad one. The classifier behind FD/KID is trained by gmzoo on the run's data set
(cached in the workdir); the distances are called FD-<dataset>, not FID.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import jax
import numpy as np

from gmzoo.metrics import baselines, classifier, sample_quality
from gmzoo.train.loop import Run, heldout_metrics, load_run, ordered_batches, sample_images

# Training examples read for the baselines, the feature net and the FD reference (all of the
# embedded sets; the first 10,000 of a large TFDS set).
MAX_TRAIN_EXAMPLES = 10_000


def _data_space_split(run: Run, source: Any, limit: int) -> np.ndarray:
    """A split mapped into the model's data space with the fixed evaluation key."""
    key = jax.random.key(run.config.eval.seed)
    prepare = jax.jit(run.space.prepare_eval)
    out = [np.asarray(prepare(b, jax.random.fold_in(key, i))["image"])
           for i, b in enumerate(ordered_batches(source, run.config.eval.batch_size, limit))]
    return np.concatenate(out)


def likelihood_report(run: Run, params: Any, test_x: np.ndarray, train_x: np.ndarray) -> dict:
    """NLL of the test split (nats / image and bits/dim) and the baselines of the same split."""
    cfg = run.config
    dims = int(np.prod(run.image_shape))
    out: dict[str, Any] = {"num_dims": dims, "num_test": int(len(test_x))}
    levels = run.space.num_levels
    if run.recipe.log_likelihood is not None:
        ll_fn = jax.jit(run.recipe.log_likelihood(cfg.model, run.module, cfg.eval.iwae_k))
        key = jax.random.key(cfg.eval.seed + 1)
        bs = cfg.eval.batch_size
        lls = [np.asarray(ll_fn(params, test_x[i:i + bs], jax.random.fold_in(key, i)))
               for i in range(0, len(test_x), bs)]
        nll = -float(np.mean(np.concatenate(lls)))
        out["model"] = {"bound": f"{run.recipe.bound} (k={cfg.eval.iwae_k})", "nll_nats": nll,
                        "bits_per_dim": nll / (dims * math.log(2))}
    if run.space.discrete:
        uni = baselines.uniform_nll(levels, dims)
        if levels == 2:
            ind = baselines.independent_bernoulli_nll(train_x, test_x)
            name = "independent per-pixel Bernoulli"
        else:
            to_levels = lambda x: np.rint(np.asarray(x) * (levels - 1)).astype(np.int64)
            ind = baselines.independent_categorical_nll(
                to_levels(run.space.to_display(train_x)), to_levels(run.space.to_display(test_x)),
                levels)
            name = "independent per-pixel categorical"
        out["baselines"] = {f"uniform over {levels} levels": uni._asdict(), name: ind._asdict()}
    return out


def sample_quality_report(run: Run, params: Any, test01: np.ndarray, train01: np.ndarray,
                          workdir: str) -> dict:
    """FD and KID of ``n`` model samples against the training images, beside the same figures
    for ``n`` held-out real images (n = min(eval.num_samples, test size), so both sides carry
    the same small-sample bias)."""
    cfg = run.config
    src = run.train_source
    raw = list(ordered_batches(src, 1000, MAX_TRAIN_EXAMPLES))
    features, feature_params = classifier.load_or_train_feature_net(
        cfg.data.name, os.path.join(workdir, "feature_net"),
        train_images=np.concatenate([b["image"] for b in raw]).astype(np.uint8),
        train_labels=np.concatenate([b["label"] for b in raw]),
        num_levels=int(src.num_levels), num_classes=int(src.num_classes),
        steps=cfg.eval.feature_net_steps or None)
    feature_fn = jax.jit(lambda x: features(feature_params, x))
    n = min(cfg.eval.num_samples, len(test01))
    fake01 = sample_images(run, params, n, seed=cfg.eval.seed + 2, mean=False)
    model = sample_quality.fd_and_kid(feature_fn, train01, fake01)
    reference = sample_quality.fd_and_kid(feature_fn, train01, test01[:n])
    tag = cfg.data.name
    return {f"FD-{tag} (samples vs train)": model["fd"],
            f"FD-{tag} reference (held-out real vs train)": reference["fd"],
            f"KID-{tag} (samples vs train)": model["kid"],
            f"KID-{tag} reference (held-out real vs train)": reference["kid"],
            "num_samples": int(n)}


def evaluate(workdir: str, *, overrides: list[str] | None = None, verbose: bool = True) -> dict:
    """Evaluates the latest checkpoint in ``workdir`` (EMA parameters) and writes
    ``<workdir>/eval/step_<N>.json``."""
    run, state = load_run(workdir, overrides=overrides)
    params = state.ema_params
    cfg = run.config
    step = int(jax.device_get(state.step))
    limit = cfg.eval.max_examples
    test_x = _data_space_split(run, run.test_source, limit)
    train_x = _data_space_split(run, run.train_source, MAX_TRAIN_EXAMPLES)
    report: dict[str, Any] = {"model": cfg.model.name, "data": cfg.data.name, "step": step,
                              "heldout": heldout_metrics(run, params, limit=limit)}
    report["likelihood"] = likelihood_report(run, params, test_x, train_x)
    report["sample_quality"] = sample_quality_report(
        run, params, np.asarray(run.space.to_display(test_x)),
        np.asarray(run.space.to_display(train_x)), workdir)
    out_dir = os.path.join(os.path.abspath(workdir), "eval")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"step_{step:07d}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    if verbose:
        print(format_report(report))
        print(f"written to {path}")
    return report


def format_report(report: dict) -> str:
    lines = [f"{report['model']} on {report['data']}, step {report['step']}"]
    lk = report.get("likelihood", {})
    if "model" in lk or "baselines" in lk:
        lines.append(f"  {'test negative log-likelihood':48s} {'nats/image':>11s} {'bits/dim':>9s}")
        if "model" in lk:
            m = lk["model"]
            lines.append(f"  {'model, ' + m['bound']:48s} {m['nll_nats']:11.2f} {m['bits_per_dim']:9.4f}")
        for name, b in lk.get("baselines", {}).items():
            lines.append(f"  {'baseline: ' + name:48s} {b['nats']:11.2f} {b['bits_per_dim']:9.4f}")
    for k, v in report.get("heldout", {}).items():
        lines.append(f"  held-out {k:39s} {v:11.4f}")
    for k, v in report.get("sample_quality", {}).items():
        lines.append(f"  {k:48s} {v:11.4f}" if isinstance(v, float) else f"  {k:48s} {v:>11}")
    return "\n".join(lines)
