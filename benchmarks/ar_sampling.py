"""Autoregressive sampling: each model's cached sampler against the naive sampler (the whole
network re-run for every dimension), on 28 x 28 binary images, the same samples from both.

    python benchmarks/ar_sampling.py [--quick] [--models gated_pixelcnn,pixelcnn,...] [--batch B]
                                     [--repeats R]

Models (issue 11), each at its recipe's default config (``zoo.get(name).default()``, built by
``zoo.setup`` exactly as ``gmzoo train NAME`` builds it) on mnist5k binarized (``data.binarize=
dynamic``: 28 x 28 x 1, D = 784 dimensions in raster order, Bernoulli conditionals):
  gated_pixelcnn  ``pixelcnn_cache.gated_pixelcnn_sample`` (vertical stack once per row, the
                  horizontal stack one pixel per layer per step)
  pixelcnn        ``pixelcnn_cache.pixelcnn_sample`` (one pixel's window per layer per step)
  transformer     ``transformer.transformer_sample`` (key-value cache)
  wavenet         ``wavenet.wavenet_sample`` (fast-wavenet activation queues). Its recipe's
                  default data are the mu-law tones; here the raster-scanned binary images
                  instead (overrides ``data.name=mnist5k data.binarize=dynamic
                  model.likelihood=bernoulli``), the network otherwise the default one
  nade            ``dense.nade_sample`` (the carried pre-activation; a bonus row, not in the
                  issue)

Parameters: ``run.recipe.init(run.module, key(train.seed), batch)`` on the first 2 training
images binarized by the run's ``space.prepare`` (untrained weights: the cost of a sample does
not depend on them). Sampling as ``gmzoo sample`` draws, ``sample.temperature`` of the default
config (1.0), unconditional: ``x_init`` zeros [B, 28, 28, 1], ``draw = run.module.draw``.
  cached  ``run.module.cached(net, params, key, x_init, draw=..., temperature=...)``
  naive   ``sampling.naive_sample(lambda x: run.module.apply_fn(params, x), key, x_init, ...)``
each ``jax.jit``-ed (params, key and x_init as arguments) and compiled ahead of time (``lower
().compile()``: the compile time is reported apart), then one untimed warm-up call each, then
``--repeats`` timed calls of each, alternating cached, naive, cached, naive, ...; repeat r draws
B samples with ``fold_in(key(0), r)``, the same key for both samplers, and the two outputs must
be equal, element for element (both split the key as ``split(key, D)`` and draw dimension d
with ``keys[d]``): every timed pair and the warm-up pair are compared, and the run fails after
writing its results if any differs.

One process per model (XLA's thread pool to itself; ``--models`` order), so the two samplers of
a model alternate within it. ms/sample = wall time of a call / B, median over the repeats
("best": the fastest call, steadier on a shared machine); ratio = naive / cached (> 1: the
cache is faster), from the medians and from the best calls, target >= 10 (issue 11). CPU ms per
sample (the process's CPU time over the call, all threads) is given beside the wall time. The
share of the CPU other processes used meanwhile (from /proc/stat, as benchmarks/run.py measures
it) and the load average are recorded per model: on a loaded machine every figure is an upper
bound of the time. JSON with every call: benchmarks/results/ar_sampling.json.

The priors over VQ-VAE codes (issue 12, ``--models vqvae_prior,vqvae_prior_transformer``):
``vqvae_prior``'s default gated PixelCNN and transformer over the 7 x 7 code map of 512 levels
that ``gmzoo train vqvae`` gives on mnist5k (``VQ_PRIORS``), timed the same way; JSON:
benchmarks/results/ar_sampling_vq.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from run import QUIET, busy_fraction, cpu_jiffies  # noqa: E402  (this folder's runner)

BINARY_MNIST = ["data.name=mnist5k", "data.binarize=dynamic", "data.scale=unit"]
# model -> overrides of its recipe's default config (the data: 28 x 28 binary images)
MODELS = {
    "gated_pixelcnn": [],
    "pixelcnn": [],
    "transformer": [],
    "wavenet": [*BINARY_MNIST, "model.likelihood=bernoulli"],
    "nade": [],
}
# The priors over VQ-VAE codes (issue 12): `gmzoo train vqvae_prior`'s networks at their default
# config (model.prior=gated_pixelcnn | transformer) over the code map of `gmzoo train vqvae`'s
# default on mnist5k: 7 x 7 codes of K = 512 levels, categorical conditionals (the gated
# PixelCNN reads each code through its learned embedding). No first-stage run is needed to time
# them: the networks are built as `vqvae_prior`'s build builds them.
VQ_PRIORS = {"vqvae_prior": "gated_pixelcnn", "vqvae_prior_transformer": "transformer"}
VQ_CODES = ((7, 7), 512)
# samples per call (full, quick). The naive sampler is D = 784 full passes per call: about 60 s
# per transformer sample, 18 s gated PixelCNN, 6 s PixelCNN, 3 s NADE, 2.4 s WaveNet on 2 loaded
# cores (load average 7-9), so B = 2 with 3 repeats and the warm-up keeps the whole benchmark
# near 10 minutes (12 at load average 8-9, about two thirds of the CPU taken by other jobs;
# less on a quiet machine). A small B is the conservative side for the ratio:
# the cached samplers' per-step overhead is amortised over fewer samples.
BATCH = (2, 1)
TARGET = 10.0  # naive / cached (issue 11)
INIT_EXAMPLES = 2


# --- worker (one process per model) -----------------------------------------------------------

def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_model(model: str, batch: int, repeats: int) -> dict:
    """Compile, warm up and time the model's cached and naive samplers, alternating."""
    import jax
    import jax.numpy as jnp

    from gmzoo import config as cfglib
    from gmzoo import zoo

    if model in VQ_PRIORS:
        return run_vq_prior(model, batch, repeats)
    cfg = cfglib.override(zoo.get(model).default(), MODELS[model])
    run = zoo.setup(cfg)
    nets = run.module
    m, d = cfg.model, cfg.data
    assert (d.name, d.binarize, m.likelihood, tuple(run.image_shape)) == \
        ("mnist5k", "dynamic", "bernoulli", (28, 28, 1)), (d, m.likelihood, run.image_shape)
    assert nets.cached is not None and not nets.num_classes, f"{model}: no cached sampler"
    temperature = float(cfg.sample.temperature)

    # params as loop.init_state makes them: the first examples, prepared (binarized) by the run
    init_key, data_key = jax.random.split(jax.random.key(cfg.train.seed), 3)[:2]
    images = np.stack([run.train_source[i]["image"] for i in range(INIT_EXAMPLES)])
    example = run.space.prepare({"image": jnp.asarray(images, jnp.float32),
                                 "label": jnp.zeros((INIT_EXAMPLES,), jnp.int32)}, data_key)
    assert set(np.unique(np.asarray(example["image"]))) <= {0.0, 1.0}
    params = run.recipe.init(nets, init_key, example)["params"]
    out = {"model": model, "overrides": MODELS[model]}
    return time_samplers(out, nets, params, (batch, *run.image_shape), temperature, repeats,
                         binary=True)


def run_vq_prior(model: str, batch: int, repeats: int) -> dict:
    """The prior network of ``vqvae_prior`` (``VQ_PRIORS``) over a 7 x 7 map of 512 codes."""
    import jax
    import jax.numpy as jnp

    from gmzoo.families.vqvae import prior

    m = prior.VQPriorConfig(prior=VQ_PRIORS[model])
    (h, w), num_codes = VQ_CODES
    nets = prior._network(m, (h, w), num_codes, 0)
    params = nets.net.init(jax.random.key(0), jnp.zeros((2, h, w, 1)))["params"]
    out = {"model": model, "prior": m.prior, "codes": [h, w, num_codes]}
    return time_samplers(out, nets, params, (batch, h, w, 1), 1.0, repeats, binary=False)


def time_samplers(out: dict, nets, params, shape: tuple[int, ...], temperature: float,
                  repeats: int, *, binary: bool) -> dict:
    """Compile, warm up and time ``nets``'s cached and naive samplers on ``x_init`` zeros of
    ``shape``, alternating; ``out`` gains the figures."""
    import jax
    import jax.numpy as jnp

    from gmzoo.families.autoregressive.sampling import naive_sample

    model, batch = out["model"], shape[0]
    num_params = int(sum(np.size(p) for p in jax.tree.leaves(params)))

    def cached(params, key, x_init):
        return nets.cached(nets.net, params, key, x_init, draw=nets.draw,
                           temperature=temperature)

    def naive(params, key, x_init):
        return naive_sample(lambda x: nets.apply_fn(params, x), key, x_init, draw=nets.draw,
                            temperature=temperature)

    x_init = jnp.zeros(shape, jnp.float32)
    key0 = jax.random.key(0)
    out.update({"params": num_params, "batch": batch, "repeats": repeats,
                "dims": int(np.prod(shape[1:])), "temperature": temperature,
                "backend": jax.default_backend(), "jax": jax.__version__,
                "cpus": len(os.sched_getaffinity(0))})
    compiled = {}
    for name, fn in (("cached", cached), ("naive", naive)):
        t0 = time.perf_counter()
        compiled[name] = jax.jit(fn).lower(params, key0, x_init).compile()
        out[f"{name}_compile_s"] = time.perf_counter() - t0
        log(f"  {model}: {name} compiled in {out[f'{name}_compile_s']:.1f} s")

    def call(name, key):
        t0, c0 = time.perf_counter(), time.process_time()
        x = jax.block_until_ready(compiled[name](params, key, x_init))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return np.asarray(x), 1e3 * wall / batch, 1e3 * cpu / batch

    def compare(a, b) -> int:
        assert a.shape == b.shape == x_init.shape
        return int(np.sum(a != b))

    # warm-up (first-call allocations), untimed in the figures; its samples compared too
    warm = {}
    for name in ("cached", "naive"):
        x, ms, _ = call(name, jax.random.key(1))
        warm[name] = x
        out[f"{name}_warmup_ms_per_sample"] = ms
        log(f"  {model}: {name} warm-up call {ms * batch / 1e3:.1f} s ({ms:.1f} ms/sample)")
    mismatches = [compare(warm["cached"], warm["naive"])]
    if binary:
        assert set(np.unique(warm["cached"])) <= {0.0, 1.0}
    for name in ("cached", "naive"):
        out[f"{name}_ms"], out[f"{name}_cpu_ms"] = [], []
    out["loadavg"] = []
    for r in range(repeats):
        key = jax.random.fold_in(key0, r)
        xs = {}
        for name in ("cached", "naive"):  # alternate: cached, naive, cached, naive, ...
            load = os.getloadavg()[0]
            xs[name], ms, cpu = call(name, key)
            out[f"{name}_ms"].append(ms)
            out[f"{name}_cpu_ms"].append(cpu)
            out["loadavg"].append(load)
            log(f"  {model} repeat {r + 1}/{repeats} {name}: {ms:.1f} ms/sample "
                f"(CPU {cpu:.1f}; load average {load:.1f})")
        mismatches.append(compare(xs["cached"], xs["naive"]))
        out.setdefault("mean_pixel", []).append(float(xs["naive"].mean()))
    out["mismatches"] = mismatches  # [warm-up, repeat 1, ...]: elements that differ
    out["same_samples"] = not any(mismatches)
    return out


# --- driver -----------------------------------------------------------------------------------

def worker(model: str, batch: int, repeats: int) -> dict:
    """Run this file as the worker of ``model`` in a fresh process (its progress on stderr);
    its JSON line, plus the CPU share other processes used meanwhile."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", model, "--batch", str(batch),
           "--repeats", str(repeats)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    usage0, jiffies0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), cpu_jiffies(), time.perf_counter()
    load0 = os.getloadavg()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    wall, usage1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{model} failed (exit {proc.returncode})")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    own = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    result["others_cpu"] = busy_fraction(jiffies0, cpu_jiffies(), own, wall)
    result["loadavg_start_end"] = (load0, os.getloadavg())
    result["process_wall_s"] = wall
    return result


def summarize(r: dict) -> dict:
    row = {k: r[k] for k in ("model", "params", "batch", "repeats", "cached_compile_s",
                             "naive_compile_s", "same_samples", "others_cpu")}
    for name in ("cached", "naive"):
        row[f"{name}_ms"] = statistics.median(r[f"{name}_ms"])
        row[f"{name}_best"] = min(r[f"{name}_ms"])
        row[f"{name}_cpu_ms"] = statistics.median(r[f"{name}_cpu_ms"])
    row["ratio"] = row["naive_ms"] / row["cached_ms"]
    row["best_ratio"] = row["naive_best"] / row["cached_best"]
    row["cpu_ratio"] = row["naive_cpu_ms"] / row["cached_cpu_ms"]
    row["target"] = f">= {TARGET:g}"
    row["met"] = row["ratio"] >= TARGET
    row["loadavg"] = statistics.median(r["loadavg"])
    return row


def print_table(rows: list[dict]) -> None:
    head = ("model", "params", "B", "cached ms/sample (best)", "naive ms/sample (best)",
            "ratio naive/cached (best)", "CPU ms/sample cached | naive", "compile s cached | naive",
            f"target >= {TARGET:g}x met", "same samples", "others' CPU", "load avg")
    lines = [(r["model"], f"{r['params']:,}", str(r["batch"]),
              f"{r['cached_ms']:.2f} ({r['cached_best']:.2f})",
              f"{r['naive_ms']:.1f} ({r['naive_best']:.1f})",
              f"{r['ratio']:.1f} ({r['best_ratio']:.1f})",
              f"{r['cached_cpu_ms']:.2f} | {r['naive_cpu_ms']:.1f}",
              f"{r['cached_compile_s']:.1f} | {r['naive_compile_s']:.1f}",
              "yes" if r["met"] else "NO", "yes" if r["same_samples"] else "NO",
              "?" if r["others_cpu"] is None else f"{r['others_cpu']:.0%}",
              f"{r['loadavg']:.1f}") for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    for i, line in enumerate([head, *lines]):
        print(" | ".join(x.ljust(w) for x, w in zip(line, widths)))
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    print(f"ms per sample: wall time of one jitted call drawing B samples (28 x 28 binary pixels; 7 x 7 codes of 512 levels for the VQ priors) "
          f"/ B, median over the repeats (fastest call in brackets), compile and one warm-up call "
          f"excluded; ratio = naive / cached (> 1: the cache is faster). Same samples: every "
          f"timed pair (same key) equal element for element. Others' CPU: the share of all "
          f"{os.cpu_count()} cores other processes used during the model's process (clean below "
          f"{QUIET:.0%}); load avg: median 1-minute load average at the timed calls. On a "
          f"loaded machine the times are upper bounds.")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--quick", action="store_true",
                   help=f"batch {BATCH[1]}, one repeat: a smoke run, not figures")
    names = (*MODELS, *VQ_PRIORS)
    p.add_argument("--models", default=",".join(MODELS),
                   help=f"comma-separated, from {', '.join(names)} (default: {', '.join(MODELS)})")
    p.add_argument("--batch", type=int, default=None,
                   help=f"samples per call (default {BATCH[0]}, quick {BATCH[1]})")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per sampler (default 3, quick 1)")
    p.add_argument("--worker", choices=names, help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    opts.batch = opts.batch or BATCH[opts.quick]
    opts.repeats = opts.repeats or (1 if opts.quick else 3)
    if opts.worker:
        print(json.dumps(run_model(opts.worker, opts.batch, opts.repeats)))
        return 0
    models = [x.strip() for x in opts.models.split(",") if x.strip()]
    unknown = [x for x in models if x not in names]
    if unknown or not models or opts.repeats < 1 or opts.batch < 1:
        p.error(f"--models takes names from {', '.join(names)}, --repeats and --batch >= 1; "
                f"got {opts.models!r}")
    t0 = time.perf_counter()
    runs, rows = [], []
    for i, model in enumerate(models):
        log(f"[{i + 1}/{len(models)}] {model}: batch {opts.batch}, {opts.repeats} repeat(s) "
            f"(load average {os.getloadavg()[0]:.1f}, {time.perf_counter() - t0:.0f} s so far)")
        res = worker(model, opts.batch, opts.repeats)
        runs.append(res)
        rows.append(summarize(res))
        r = rows[-1]
        log(f"[{i + 1}/{len(models)}] {model}: cached {r['cached_ms']:.2f} ms/sample, naive "
            f"{r['naive_ms']:.1f}, ratio {r['ratio']:.1f}, same samples {r['same_samples']} "
            f"({res['process_wall_s']:.0f} s)")
    print_table(rows)
    wall = time.perf_counter() - t0
    load = os.getloadavg()
    print(f"wall {wall:.0f} s; load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
          f"on {os.cpu_count()} CPUs")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    record = {"name": "ar_sampling", "time": datetime.datetime.now().isoformat(timespec="seconds"),
              "command": " ".join([os.path.relpath(__file__, ROOT), *(argv or sys.argv[1:])]),
              "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "python": platform.python_version()},
              "batch": opts.batch, "repeats": opts.repeats, "quick": opts.quick, "wall_s": wall,
              "loadavg_end": load, "target": TARGET, "rows": rows, "runs": runs}
    stem = "ar_sampling_vq" if set(models) <= set(VQ_PRIORS) else "ar_sampling"
    path = os.path.join(HERE, "results", f"{stem}.json")
    with open(path, "w") as f:
        json.dump(record, f, indent=2)
    print(f"results: {os.path.relpath(path, ROOT)}")
    differ = [r["model"] for r in runs if not r["same_samples"]]
    assert not differ, (f"cached and naive samples differ for {differ} (elements per pair: "
                        f"{ {r['model']: r['mismatches'] for r in runs if not r['same_samples']} })")
    return 0


if __name__ == "__main__":
    sys.exit(main())
