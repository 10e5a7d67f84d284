"""``gmzoo evaluate``: likelihood and sample quality of a trained run, beside baselines.

Every likelihood figure is printed beside two baselines computed in the same run (a uniform model
and an independent per-pixel model fitted on the training split), and every Frechet distance
beside the distance of held-out real data to the training data, so a reader can tell a good
number from a bad one. The classifier behind FD/KID is trained by gmzoo on the run's data set
(cached in the workdir, or in ``$GMZOO_FEATURE_NET_DIR`` when set: one directory shared by
every run's evaluation, each net trained once per data set and settings, its file named by a
hash of both); the distances are called FD-<dataset>, not FID.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import os
from typing import Any

import jax
import numpy as np

from gmzoo.metrics import baselines, classifier, image, modes, points, sample_quality
from gmzoo.data.pipeline import ordered_batches
from gmzoo import config as cfglib
from gmzoo.config import ConfigError
from gmzoo.train.loop import (Run, Table, heldout_metrics, inference_params, load_run,
                              sample_images, setup, translate_images)

# Training examples read for the baselines, the feature net and the FD reference (all of the
# embedded sets; the first 10,000 of a large TFDS set).
MAX_TRAIN_EXAMPLES = 10_000
# A directory of feature nets shared by every run's evaluation (else each workdir keeps its own).
FEATURE_NET_DIR_ENV = "GMZOO_FEATURE_NET_DIR"


def _raw_split(source: Any, batch_size: int, limit: int) -> list[dict[str, np.ndarray]]:
    return list(ordered_batches(source, batch_size, limit))


def _data_space(run: Run, raw: list[dict[str, np.ndarray]]) -> np.ndarray:
    """Raw batches mapped into the model's data space, batch i with ``fold_in(eval key, i)``
    (the same preparation :func:`~gmzoo.train.loop.heldout_metrics` uses)."""
    key = jax.random.key(run.config.eval.seed)
    prepare = jax.jit(run.space.prepare)
    return np.concatenate([np.asarray(prepare(b, jax.random.fold_in(key, i))["image"])
                           for i, b in enumerate(raw)])


def likelihood_report(run: Run, params: Any, test_x: np.ndarray, train_x: np.ndarray,
                      test_levels: np.ndarray, train_levels: np.ndarray) -> dict:
    """NLL of the test split (nats / image and bits/dim) and baselines fitted on the training
    split: on the binarized images when the run binarizes, else on the stored levels."""
    cfg, space = run.config, run.space
    dims = int(np.prod(run.image_shape))
    out: dict[str, Any] = {"num_dims": dims, "num_test": int(len(test_x))}
    estimates = []  # (label, fn(params, x, key) -> [B] log p(x))
    if run.recipe.likelihoods is not None:
        estimates += list(run.recipe.likelihoods(cfg.model, run.module, cfg.eval).items())
    models = []
    for label, fn in estimates:
        ll_fn = jax.jit(fn)
        key = jax.random.key(cfg.eval.seed + 1)
        bs = cfg.eval.batch_size
        lls = [np.asarray(ll_fn(params, test_x[i:i + bs], jax.random.fold_in(key, i)))
               for i in range(0, len(test_x), bs)]
        nll = -float(np.mean(np.concatenate(lls)))
        if not space.discrete:
            # A density of dequantized data bounds the discrete NLL once the volume of a
            # dequantization bin is counted (see DataSpace.dequantization_nats_per_dim).
            nll += dims * space.dequantization_nats_per_dim
            label += ", dequantized"
        models.append({"bound": label, "nll_nats": nll,
                       "bits_per_dim": nll / (dims * math.log(2))})  # (see gmzoo.data.transforms)
    if models:
        out["model"], out["models"] = models[0], models
    if cfg.data.binarize != "none":
        levels, train_d, test_d = 2, train_x, test_x
        name = "independent per-pixel Bernoulli"
    else:
        levels, train_d, test_d = int(run.train_source.num_levels), train_levels, test_levels
        name = "independent per-pixel categorical"
    out["baselines"] = {
        f"uniform over {levels} levels": baselines.uniform_nll(levels, dims)._asdict(),
        name: baselines.independent_categorical_nll(train_d, test_d, levels)._asdict()}
    return out


def ssim_window(image_shape: tuple[int, ...]) -> dict[str, float] | None:
    """SSIM's Gaussian window for images of ``image_shape``: Wang et al.'s 11x11, sigma 1.5 when
    it fits, else 7x7, sigma 0.8 (skimage's window for that sigma); ``None`` below 7 pixels."""
    side = min(image_shape[:2])
    if side >= 11:
        return {"filter_size": 11, "filter_sigma": 1.5}
    if side >= 7:
        return {"filter_size": 7, "filter_sigma": 0.8}
    return None


def translation_report(run: Run, params: Any) -> dict:
    """PSNR and SSIM (images in [0, 1], MAX = 1) of an image-to-image model's outputs against
    the targets of the test split (at most ``eval.max_examples``), beside the same figures for
    the recipe's model-free baseline, and the share of test images on which the model's PSNR
    beats the baseline's."""
    cfg = run.config
    n = cfg.eval.max_examples or len(run.test_source)
    t = translate_images(run, params, n, seed=cfg.eval.seed + 3)
    window = ssim_window(run.image_shape)
    out: dict[str, Any] = {"num_test": int(len(t.target)), "baseline": run.recipe.baseline}
    psnr = {name: np.asarray(image.psnr(getattr(t, name), t.target)) for name in ("output", "baseline")}
    for name, label in (("output", "model"), ("baseline", "baseline")):
        out[f"PSNR {label} (dB)"] = float(np.mean(psnr[name]))
        if window is not None:
            out[f"SSIM {label}"] = float(np.mean(image.ssim(getattr(t, name), t.target, **window)))
    out["share of images where the model's PSNR beats the baseline's"] = float(
        np.mean(psnr["output"] > psnr["baseline"]))
    if window is not None:
        out["SSIM window"] = f"{window['filter_size']}x{window['filter_size']}, sigma {window['filter_sigma']}"
    return out


def sample_quality_report(run: Run, params: Any, test01: np.ndarray, train01: np.ndarray,
                          workdir: str) -> dict:
    """FD and KID of ``n`` model samples against the training images, beside the same figures
    for ``n`` held-out real images (n = min(eval.num_samples, test size), so both sides carry
    the same small-sample bias). For an image-to-image model, pass the translation targets of
    the two splits as ``test01`` and ``train01``: its samples are its outputs on the test split."""
    cfg = run.config
    src = run.train_source
    raw = _raw_split(src, 1000, MAX_TRAIN_EXAMPLES)
    features, feature_params = classifier.load_or_train_feature_net(
        cfg.data.name,
        os.path.abspath(os.path.expanduser(os.environ.get(FEATURE_NET_DIR_ENV) or
                                           os.path.join(workdir, "feature_net"))),
        train_images=np.concatenate([b["image"] for b in raw]).astype(np.uint8),
        train_labels=np.concatenate([b["label"] for b in raw]),
        num_levels=int(src.num_levels), num_classes=int(src.num_classes),
        steps=cfg.eval.feature_net_steps or None)
    feature_fn = jax.jit(lambda x: features(feature_params, x))
    n = min(cfg.eval.num_samples, len(test01))
    start = time.perf_counter()
    fake01 = sample_images(run, params, n, seed=cfg.eval.seed + 2, mean=False)
    sample_seconds = time.perf_counter() - start
    model = sample_quality.fd_and_kid(feature_fn, train01, fake01)
    reference = sample_quality.fd_and_kid(feature_fn, train01, test01[:n])
    tag = cfg.data.name
    return {f"FD-{tag} (samples vs train)": model["fd"],
            f"FD-{tag} reference (held-out real vs train)": reference["fd"],
            f"KID-{tag} (samples vs train)": model["kid"],
            f"KID-{tag} reference (held-out real vs train)": reference["kid"],
            "num_samples": int(n), "sampling seconds (incl. compile)": round(sample_seconds, 2)}


def point_quality_report(run: Run, params: Any) -> dict:
    """Sample quality on a 2-D point set: the energy distance (``gmzoo.metrics.points``) of
    ``n`` samples to the training set, beside that of ``n`` held-out points (n = min(
    eval.num_samples, test size)); for a mixture (``ring8``, ``grid25``) also mode coverage
    (``gmzoo.metrics.modes``: modes with at least ceil(n / 5M) samples within 3 std of their
    centre, the share of such samples, and KL of their modes' histogram to uniform) of the
    samples and of the held-out points."""
    cfg, src = run.config, run.train_source
    n = min(cfg.eval.num_samples, len(run.test_source))
    start = time.perf_counter()
    fake = sample_images(run, params, n, seed=cfg.eval.seed + 2, mean=False)  # [n, 2]
    sample_seconds = time.perf_counter() - start
    held_out = points.spread_subset(run.test_source.points, n)  # every part of a set stored by component
    out: dict[str, Any] = {
        f"energy distance-{cfg.data.name} (samples vs train)": points.energy_distance(fake, src.points),
        f"energy distance-{cfg.data.name} reference (held-out vs train)":
            points.energy_distance(held_out, src.points)}
    if src.centres is not None:
        for label, x in (("samples", fake), ("held-out reference", held_out)):
            cov = modes.mode_coverage(x, src.centres, src.std)  # NaN: no mode
            out[f"modes covered ({label}), of {cov['num_modes']}"] = cov["modes_covered"]
            out[f"high-quality share ({label})"] = cov["high_quality_share"]
            out[f"KL to uniform over modes ({label})"] = cov["kl_to_uniform"]
    out.update({"num_samples": int(n), "sampling seconds (incl. compile)": round(sample_seconds, 2)})
    return out


def evaluate(workdir: str, table: Table, *, overrides: list[str] | None = None,
             verbose: bool = True, step: int | None = None) -> dict:
    """Evaluates the latest checkpoint in ``workdir`` (EMA parameters) and writes
    ``<workdir>/eval/step_<N>.json``; ``table`` names the families (``gmzoo.zoo.get``)."""
    run, state = load_run(workdir, table, step=step, overrides=overrides)  # step: --step
    params = inference_params(run, state)
    cfg = run.config
    step = int(jax.device_get(state.step))
    if run.points:  # no pixels: no per-pixel baselines, no feature net
        report = {"model": cfg.model.name, "data": cfg.data.name, "step": step,
                  "heldout": heldout_metrics(run, params, limit=cfg.eval.max_examples),
                  "sample_quality": point_quality_report(run, params)}
        return _finish(workdir, step, _family_lines(run, params, workdir, report), verbose)
    limit = cfg.eval.max_examples
    test_raw = _raw_split(run.test_source, cfg.eval.batch_size, limit)
    train_raw = _raw_split(run.train_source, cfg.eval.batch_size, MAX_TRAIN_EXAMPLES)
    test_x, train_x = _data_space(run, test_raw), _data_space(run, train_raw)
    levels = lambda raw: np.concatenate([b["image"] for b in raw]).astype(np.int64)
    report: dict[str, Any] = {"model": cfg.model.name, "data": cfg.data.name, "step": step,
                              "heldout": heldout_metrics(run, params, limit=limit)}
    if run.recipe.samplers:
        report["sampler"] = dict(cfglib.to_dict(cfg.sample),
                                 sampler=cfg.sample.sampler or run.recipe.samplers[0])
    report["likelihood"] = likelihood_report(run, params, test_x, train_x, levels(test_raw),
                                             levels(train_raw))
    test01, train01 = (np.asarray(run.space.to_display(a)) for a in (test_x, train_x))
    if run.recipe.translate is not None:
        report["translation"] = translation_report(run, params)
        # The outputs are compared with what the targets look like (for unpaired models the
        # other domain), not with the inputs' data set.
        test01, train01 = (translate_images(run, params, len(a), seed=cfg.eval.seed + 4,
                                            split=split).target
                           for a, split in ((test_x, "test"), (train_x, "train")))
    report["sample_quality"] = sample_quality_report(run, params, test01, train01, workdir)
    return _finish(workdir, step, _family_lines(run, params, workdir, report), verbose)


def _family_lines(run: Run, params: Any, workdir: str, report: dict) -> dict:
    """``report`` with the family's own lines (``Recipe.report``) under ``"family"``."""
    if run.recipe.report is not None:
        out_dir = os.path.join(os.path.abspath(workdir), "eval")
        os.makedirs(out_dir, exist_ok=True)
        report["family"] = run.recipe.report(run, params, out_dir)
    return report


def _finish(workdir: str, step: int, report: dict, verbose: bool) -> dict:
    path = _write_new(os.path.join(os.path.abspath(workdir), "eval"), f"step_{step:07d}", report)
    if verbose:
        print(format_report(report))
        print(f"written to {path}")
    return report


def parse_sweep_spec(spec: str) -> list[str]:
    """``"ddim:50,eta=0.5"`` -> ``["sample.sampler=ddim", "sample.steps=50", "sample.eta=0.5"]``."""
    head, *rest = [p.strip() for p in spec.split(",") if p.strip()] or [""]
    name, _, steps = head.partition(":")
    if not name or "=" in name:
        raise ConfigError(f"--sweep {spec!r}: expected SAMPLER[:STEPS][,key=value...], "
                          "e.g. ddim:50 or pc:500,snr=0.1")
    out = [f"sample.sampler={name}", f"sample.steps={steps or 0}"]
    for item in rest:
        if "=" not in item:
            raise ConfigError(f"--sweep {spec!r}: {item!r} is not key=value (a sample.* key)")
        out.append(f"sample.{item}")
    return out


def _write_new(out_dir: str, stem: str, payload: Any) -> str:
    os.makedirs(out_dir, exist_ok=True)
    path, n = os.path.join(out_dir, f"{stem}.json"), 1
    while os.path.exists(path):  # never overwrite an earlier evaluation
        path = os.path.join(out_dir, f"{stem}_{n}.json")
        n += 1
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
    return path


def sampler_sweep(workdir: str, specs: list[str], table: Table, *,
                  overrides: list[str] | None = None, verbose: bool = True,
                  step: int | None = None) -> list[dict]:
    """FD / KID (and sampling time) of one checkpoint under several samplers: each spec is
    ``SAMPLER[:STEPS][,key=value...]`` (sample.* keys). Writes ``eval/sweep_step_<N>.json``."""
    settings = [parse_sweep_spec(s) for s in specs]
    run, state = load_run(workdir, table, step=step, overrides=overrides)  # step: --step
    for setting in settings:  # refuse a bad spec before any sampling
        setup(cfglib.override(run.config, setting), table)
    cfg = run.config
    test_x = _data_space(run, _raw_split(run.test_source, cfg.eval.batch_size, cfg.eval.max_examples))
    train_x = _data_space(run, _raw_split(run.train_source, cfg.eval.batch_size, MAX_TRAIN_EXAMPLES))
    test01, train01 = (np.asarray(run.space.to_display(a)) for a in (test_x, train_x))
    rows = []
    for spec, setting in zip(specs, settings):
        r = dataclasses.replace(run, config=cfglib.override(run.config, setting))
        q = sample_quality_report(r, inference_params(r, state), test01, train01, workdir)
        rows.append({"sampler": spec, **q})
        if verbose:
            fd = next(v for k, v in q.items() if k.startswith("FD-") and "reference" not in k)
            kid = next(v for k, v in q.items() if k.startswith("KID-") and "reference" not in k)
            print(f"  {spec:28s} FD {fd:9.3f}  KID {kid:9.3f}  "
                  f"{q['sampling seconds (incl. compile)']:8.1f} s", flush=True)
    step = int(jax.device_get(state.step))
    path = _write_new(os.path.join(os.path.abspath(workdir), "eval"), f"sweep_step_{step:07d}",
                      {"model": cfg.model.name, "data": cfg.data.name, "step": step, "rows": rows})
    if verbose:
        print(f"written to {path}")
    return rows


def format_report(report: dict) -> str:
    lines = [f"{report['model']} on {report['data']}, step {report['step']}"]
    lk = report.get("likelihood", {})
    if "model" in lk or "baselines" in lk:
        lines.append(f"  {'test negative log-likelihood':48s} {'nats/image':>11s} {'bits/dim':>9s}")
        for m in lk.get("models", [lk["model"]] if "model" in lk else []):
            lines.append(f"  {'model, ' + m['bound']:48s} {m['nll_nats']:11.2f} {m['bits_per_dim']:9.4f}")
        for name, b in lk.get("baselines", {}).items():
            lines.append(f"  {'baseline: ' + name:48s} {b['nats']:11.2f} {b['bits_per_dim']:9.4f}")
    if "sampler" in report:
        sm = report["sampler"]
        lines.append("  sampler: " + ", ".join(f"{k}={v}" for k, v in sm.items()))
    for k, v in report.get("heldout", {}).items():
        lines.append(f"  held-out {k:39s} {v:11.4f}")
    if "translation" in report:
        lines.append(f"  translation of the test split (baseline: {report['translation']['baseline']})")
        for k, v in report["translation"].items():
            if k != "baseline":
                lines.append(f"  {k:48s} {v:11.4f}" if isinstance(v, float) else f"  {k:48s} {v:>11}")
    for section in ("sample_quality", "family"):
        for k, v in report.get(section, {}).items():
            lines.append(f"  {k:48s} {v:11.4f}" if isinstance(v, float) else f"  {k:48s} {v:>11}")
    return "\n".join(lines)
