"""scikit-learn's BernoulliRBM beside gmzoo's RBM: held-out NLL by gmzoo's AIS, and time per epoch.

    python benchmarks/rbm_sklearn.py [--quick] [--learning-rate 0.1] [--repeats 3] [--out FILE]

Likelihood (one process, ``--role nll``). scikit-learn's ``BernoulliRBM`` (500 hidden, batch 100)
is trained on gmzoo's own mnist5k training split (``zoo.setup`` of ``gmzoo train rbm``'s default
config: the 4,000 training images), dynamically binarized as gmzoo trains: every minibatch is a
fresh draw v ~ Bernoulli(pixel / 255) made by the run's ``space.prepare`` (key ``fold_in(key(0),
step)``), in the order of the loop's ``BatchIterator`` (the same seed, so the same epoch
permutations), one ``partial_fit`` per minibatch (``fit`` would reuse one binarization every
epoch). 125 epochs = gmzoo's 5,000 steps of 100 over 4,000 images; one BLAS thread (the
updates do not depend on it).
scikit-learn trains by PCD-1 (its ``h_samples_``: ``batch_size`` persistent chains) with plain SGD
on the mean gradient (each minibatch: theta += learning_rate * mean(positive - negative
statistics)); gmzoo's ``rbm`` default trains by CD-10 with Adam 1e-3 on the free-energy gap. No
number maps Adam's step onto SGD's, so scikit-learn keeps its own default ``learning_rate=0.1``
(``--learning-rate`` changes it). The report gives scikit-learn's RMS weight change per update
over its last epoch beside Adam's, which moves each weight by at most about 1e-3 per update.
Its ``components_`` [H, V], ``intercept_visible_`` [V] and ``intercept_hidden_`` [H] become gmzoo's
params ``{"W": components_.T, "b": intercept_visible_, "c": intercept_hidden_}`` (checked: both
free energies agree on the test images), scored exactly as ``gmzoo evaluate`` scores a trained
``rbm``: the likelihood table's AIS (base from the test batch's marginals, key eval.seed + 1) and
the family report's ``ais_nll`` (base from the training marginals, key eval.seed + 7, with the
standard errors), 100 chains and 14,500 betas, on the test split binarized with the evaluation's
fixed key, beside the per-pixel Bernoulli baseline of the same binarized splits.
``BernoulliRBM.score_samples`` (a one-bit stochastic pseudo-likelihood) is never computed here.

Time per epoch (40 minibatches of 100 over the 4,000 training images), each in its own process
(OpenBLAS's and XLA's thread pools would fight over the cores), alternating, ``--repeats``
times, in two modes: "2 cores" (every core the machine gives, each library's default threads)
and "1 core" (the process pinned to one core before numpy or jax start, so every pool has one
thread: steadier on a loaded machine, where a second OpenBLAS thread spins). The first call (XLA
compile, or scikit-learn's initialisation) is reported apart:
  sklearn  ``BernoulliRBM.fit``'s epoch loop (``_fit`` on each of its minibatch slices; ``fit``
           itself over 2 epochs is timed as a check) on one fixed binarization, float32
           (gmzoo's dtype) and float64 (what ``fit`` makes of bool or float64 input);
  gmzoo    the compiled step as ``gmzoo train rbm_pcd`` runs it (PCD-1, 100 chains, batch 100,
           Adam): ``loop.init_state``, ``loop.optimizer_and_step``,
           ``parallel.compile_steps(scan_steps(step))``, one step per call
           (``train.steps_per_call=1``), each minibatch drawn from the loop's ``BatchIterator``,
           put on the device and binarized inside the step; and ``gmzoo train rbm`` (CD-10) for
           context.
ratio = sklearn / gmzoo rbm_pcd per epoch (> 1: gmzoo faster): wall time from the medians over
the repeats (the runs others left alone when there are any) and from the fastest epoch of each,
and the process's CPU time (less sensitive to other jobs, though a spinning thread counts).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

if "--one-core" in sys.argv:  # before numpy / jax start their thread pools: they size them by
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # the CPUs this process may use

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from run import QUIET, run_once  # noqa: E402  (this folder's runner: one process per run)
from vae_step import timed  # noqa: E402

BATCH = 100
HIDDEN = 500
SKLEARN_LR = 0.1  # BernoulliRBM's default
SKLEARN_SEED = 0
TRAIN_KEY_SEED = 0  # the binarization keys of scikit-learn's minibatches
QUICK = dict(epochs=2, ais_chains=16, ais_betas=300, time_epochs=2)
FULL = dict(epochs=None, ais_chains=None, ais_betas=None, time_epochs=4)  # None: gmzoo's defaults
MODES = {"2 cores": [], "1 core": ["--one-core"]}  # all the machine's cores, or one pinned core


def gmzoo_run(model: str, overrides: list[str]):
    """The ``gmzoo train MODEL`` run (its default config plus ``overrides``)."""
    from gmzoo import config as cfglib
    from gmzoo import zoo

    config = cfglib.override(zoo.get(model).default(), [f"train.batch_size={BATCH}", *overrides])
    m = config.model
    assert (m.num_hidden, config.data.name, config.data.binarize) == (HIDDEN, "mnist5k", "dynamic")
    return zoo.setup(config)


# --- likelihood ------------------------------------------------------------------------------

def sklearn_params(rbm) -> dict:
    """gmzoo's RBM params (``gmzoo.families.rbm.rbm``) of a fitted ``BernoulliRBM``:
    W = components_.T [V, H], b = intercept_visible_ [V], c = intercept_hidden_ [H], float32."""
    import jax.numpy as jnp

    return {"W": jnp.asarray(rbm.components_.T, jnp.float32),
            "b": jnp.asarray(rbm.intercept_visible_, jnp.float32),
            "c": jnp.asarray(rbm.intercept_hidden_, jnp.float32)}


def run_nll(args) -> dict:
    import jax
    import threadpoolctl
    from sklearn.neural_network import BernoulliRBM

    from gmzoo.data.pipeline import BatchIterator
    from gmzoo.families.rbm import family, rbm as rbm_lib
    from gmzoo.train import evaluate

    sizes = QUICK if args.quick else FULL
    overrides = [f"eval.{k}={sizes[k]}" for k in ("ais_chains", "ais_betas") if sizes[k]]
    run = gmzoo_run("rbm", overrides)
    cfg = run.config
    n_train = len(run.train_source)
    epochs = sizes["epochs"] or cfg.train.steps * cfg.train.batch_size // n_train  # 125
    batches = BatchIterator(run.train_source, BATCH, seed=cfg.train.seed)
    prepare = jax.jit(run.space.prepare)
    key = jax.random.key(TRAIN_KEY_SEED)
    model = BernoulliRBM(n_components=HIDDEN, learning_rate=args.learning_rate, batch_size=BATCH,
                         n_iter=epochs, random_state=SKLEARN_SEED)
    steps = epochs * batches.batches_per_epoch
    rms_updates = []
    t0 = time.perf_counter()
    # One BLAS thread: on a loaded machine OpenBLAS's second thread spins (about 6x the CPU time
    # per update); the updates are the same.
    with threadpoolctl.threadpool_limits(1):
        for step in range(steps):
            v = np.asarray(prepare(next(batches), jax.random.fold_in(key, step))["image"])
            last_epoch = step >= steps - batches.batches_per_epoch
            before = model.components_.copy() if last_epoch and step else None
            model.partial_fit(v.reshape(BATCH, -1))
            if before is not None:
                rms_updates.append(float(np.sqrt(np.mean((model.components_ - before) ** 2))))
    train_s = time.perf_counter() - t0
    params = sklearn_params(model)
    if args.save_params:  # gmzoo's layout, for a later look (norms, samples, another AIS)
        np.savez(args.save_params, **{k: np.asarray(v) for k, v in params.items()})

    # The evaluation's splits: batch i of eval.batch_size binarized with fold_in(key(eval.seed), i).
    train_v = np.asarray(family.data_split(run, run.train_source))  # [4000, V]
    test_v = np.asarray(family.data_split(run, run.test_source, cfg.eval.max_examples))  # [1000, V]
    f_sklearn = model._free_energy(test_v.astype(np.float64))  # its own F(v), float64
    f_gmzoo = np.asarray(rbm_lib.free_energy(params, test_v), np.float64)
    f_err = float(np.max(np.abs(f_sklearn - f_gmzoo) / np.maximum(1.0, np.abs(f_sklearn))))
    assert f_err < 1e-4, f"the converted params' free energy differs from scikit-learn's ({f_err})"

    t0 = time.perf_counter()
    shape = (-1, *run.image_shape)
    table = evaluate.likelihood_report(run, params, test_v.reshape(shape), train_v.reshape(shape),
                                       test_v.reshape(shape), train_v.reshape(shape))
    report = family.ais_nll(params, train_v, test_v, cfg.eval)
    score_s = time.perf_counter() - t0
    return {
        "sklearn": {"n_components": HIDDEN, "learning_rate": args.learning_rate,
                    "batch_size": BATCH, "epochs": epochs, "updates": steps,
                    "random_state": SKLEARN_SEED, "method": "PCD-1, SGD, 100 persistent chains",
                    "training": "one partial_fit per dynamically binarized minibatch, float64"},
        "rms_weight_update_last_epoch": float(np.mean(rms_updates)) if rms_updates else None,
        "max_relative_free_energy_difference": f_err,
        "likelihood_table": table["models"],
        "baselines": table["baselines"],
        "report": report,
        "train_s": train_s, "score_s": score_s,
        "eval": {"ais_chains": cfg.eval.ais_chains, "ais_betas": cfg.eval.ais_betas,
                 "seed": cfg.eval.seed, "num_test": int(len(test_v)), "num_train": int(len(train_v))},
        "versions": versions(),
    }


def versions() -> dict:
    import jax
    import sklearn

    return {"sklearn": sklearn.__version__, "jax": jax.__version__, "numpy": np.__version__}


# --- time per epoch --------------------------------------------------------------------------

def time_sklearn(args) -> dict:
    """ms per epoch of ``BernoulliRBM.fit``'s epoch loop on one fixed binarization, float32 and
    float64 (numpy and OpenBLAS only: this process runs no XLA computation)."""
    from sklearn.neural_network import BernoulliRBM
    from sklearn.utils import gen_even_slices

    from gmzoo.data.registry import load

    images = load("mnist5k", "train").images  # uint8 [4000, 28, 28, 1]
    n = len(images)
    rng = np.random.default_rng(0)
    v = (rng.random(images.shape) < images / 255.0).reshape(n, -1)  # one dynamic draw, bool
    out = {"num_examples": n, "batches_per_epoch": int(np.ceil(n / BATCH)),
           "cpus": len(os.sched_getaffinity(0))}
    for dtype in ("float32", "float64"):
        x = v.astype(dtype)
        model = BernoulliRBM(n_components=HIDDEN, learning_rate=SKLEARN_LR, batch_size=BATCH,
                             n_iter=1, random_state=SKLEARN_SEED)
        t0 = time.perf_counter()
        model.fit(x)  # initialisation and one epoch (the warm-up)
        out[f"{dtype}_first_fit_s"] = time.perf_counter() - t0
        assert model.components_.dtype == np.dtype(dtype)
        n_batches = int(np.ceil(n / BATCH))
        slices = list(gen_even_slices(n_batches * BATCH, n_batches, n_samples=n))
        rs = np.random.RandomState(SKLEARN_SEED)  # fit's own rng is a local variable

        def epochs(first, count, model=model, x=x, slices=slices, rs=rs):
            for _ in range(count):
                for s in slices:  # the body of BernoulliRBM.fit's loop over iterations
                    model._fit(x[s], rs)

        cpu0 = time.process_time()
        res = timed(epochs, args.time_epochs, args.time_epochs)
        out[f"{dtype}_cpu_ms_per_epoch"] = 1e3 * (time.process_time() - cpu0) / args.time_epochs
        out[f"{dtype}_ms_per_epoch"] = res["ms_per_step"]
        out[f"{dtype}_best_ms_per_epoch"] = res["best_ms_per_step"]
        if dtype == "float32":  # check: fit itself (initialisation included) over 2 epochs
            whole = BernoulliRBM(n_components=HIDDEN, learning_rate=SKLEARN_LR, batch_size=BATCH,
                                 n_iter=2, random_state=SKLEARN_SEED)
            t0 = time.perf_counter()
            whole.fit(x)
            out[f"{dtype}_fit_ms_per_epoch"] = 1e3 * (time.perf_counter() - t0) / 2
    import threadpoolctl

    out["blas"] = [{k: p.get(k) for k in ("internal_api", "num_threads", "version")}
                   for p in threadpoolctl.threadpool_info()]
    return out


def time_gmzoo(args) -> dict:
    """ms per epoch of the step ``gmzoo train MODEL`` compiles, run as the loop runs it."""
    import jax

    from gmzoo.data.pipeline import BatchIterator
    from gmzoo.train import loop, parallel
    from gmzoo.train.step import scan_steps

    run = gmzoo_run(args.model, [])
    cfg = run.config
    m = cfg.model
    assert cfg.train.steps_per_call == 1 and cfg.train.compute_dtype == "float32"
    if args.model == "rbm_pcd":
        assert (m.method, m.gibbs_steps, m.num_chains) == ("pcd", 1, BATCH)
    state = loop.init_state(run)
    _, step = loop.optimizer_and_step(run, with_model_state=bool(state.model_state))
    run_steps = parallel.compile_steps(scan_steps(step), run.mesh)
    sharding = parallel.batch_sharding(run.mesh)
    batches = BatchIterator(run.train_source, BATCH, seed=cfg.train.seed)
    per_epoch = batches.batches_per_epoch
    metrics = None

    def one_step():
        nonlocal state, metrics
        b = next(batches)  # what the loop does each call: stack k = 1 batches, put them, run
        state, metrics = run_steps(state, parallel.put_batch({k: x[None] for k, x in b.items()},
                                                             sharding))

    t0 = time.perf_counter()
    one_step()
    jax.block_until_ready(state)
    out = {"model": args.model, "method": f"{m.method.upper()}-{m.gibbs_steps}",
           "optimizer": f"{cfg.optim.optimizer} {cfg.optim.learning_rate}",
           "compile_s": time.perf_counter() - t0, "batches_per_epoch": per_epoch,
           "cpus": len(os.sched_getaffinity(0)),
           "backend": jax.default_backend(), "version": jax.__version__}
    for _ in range(per_epoch - 1):  # the rest of the first epoch: warm-up
        one_step()
    jax.block_until_ready(state)

    def epochs(first, count):
        for _ in range(count * per_epoch):
            one_step()

    cpu0 = time.process_time()
    res = timed(epochs, args.time_epochs, args.time_epochs, lambda: jax.block_until_ready(state))
    out["cpu_ms_per_epoch"] = 1e3 * (time.process_time() - cpu0) / args.time_epochs
    out["ms_per_epoch"], out["best_ms_per_epoch"] = res["ms_per_step"], res["best_ms_per_step"]
    assert bool(np.all(jax.device_get(metrics["finite"]))), "non-finite RBM step"
    return out


# --- the driver ------------------------------------------------------------------------------

def clean_median(runs: list[dict], key: str) -> float:
    quiet = [r for r in runs if r["others_cpu"] is not None and r["others_cpu"] < QUIET]
    return statistics.median(r[key] for r in (quiet or runs))


def summarize(runs: dict[str, list[dict]]) -> dict:
    """Medians over the clean runs (all if none was) and fastest epochs; sklearn / rbm_pcd."""
    pcd = clean_median(runs["rbm_pcd"], "ms_per_epoch")
    pcd_best = min(r["best_ms_per_epoch"] for r in runs["rbm_pcd"])
    pcd_cpu = clean_median(runs["rbm_pcd"], "cpu_ms_per_epoch")
    summary = {}
    for dtype in ("float32", "float64"):
        sk = clean_median(runs["sklearn"], f"{dtype}_ms_per_epoch")
        sk_best = min(r[f"{dtype}_best_ms_per_epoch"] for r in runs["sklearn"])
        sk_cpu = clean_median(runs["sklearn"], f"{dtype}_cpu_ms_per_epoch")
        summary[f"sklearn {dtype}"] = {"ms_per_epoch": sk, "best_ms_per_epoch": sk_best,
                                       "cpu_ms_per_epoch": sk_cpu,
                                       "ratio_vs_rbm_pcd": sk / pcd,
                                       "best_ratio_vs_rbm_pcd": sk_best / pcd_best,
                                       "cpu_ratio_vs_rbm_pcd": sk_cpu / pcd_cpu}
    for model in ("rbm_pcd", "rbm"):
        summary[f"gmzoo {model}"] = {
            "ms_per_epoch": clean_median(runs[model], "ms_per_epoch"),
            "best_ms_per_epoch": min(r["best_ms_per_epoch"] for r in runs[model]),
            "cpu_ms_per_epoch": clean_median(runs[model], "cpu_ms_per_epoch"),
            "compile_s": statistics.median(r["compile_s"] for r in runs[model])}
    summary["others_cpu"] = [r["others_cpu"] for rs in runs.values() for r in rs]
    return summary


def main(args) -> None:
    sizes = QUICK if args.quick else FULL
    common = ["--time-epochs", str(sizes["time_epochs"])]
    script = os.path.basename(__file__)
    out: dict = {"args": vars(args), "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                 "timing": {}, "timing_runs": {}}
    modes = {m: MODES[m] for m in (args.modes.split(",") if args.modes else MODES)}
    for mode, flags in ([] if args.skip_timing else modes.items()):
        runs: dict[str, list[dict]] = {"sklearn": [], "rbm_pcd": [], "rbm": []}
        for r in range(args.repeats):
            runs["sklearn"].append(run_once(script, ["--role", "sklearn", *common, *flags]))
            for model in ("rbm_pcd", "rbm"):
                runs[model].append(run_once(script, ["--role", "gmzoo", "--model", model, *common,
                                                     *flags]))
            print(f"{mode}, timing repeat {r + 1}/{args.repeats}: sklearn float32 "
                  f"{runs['sklearn'][-1]['float32_ms_per_epoch']:.0f} ms/epoch, gmzoo rbm_pcd "
                  f"{runs['rbm_pcd'][-1]['ms_per_epoch']:.0f}, rbm {runs['rbm'][-1]['ms_per_epoch']:.0f}",
                  flush=True)
        out["timing_runs"][mode] = runs
        out["timing"][mode] = summarize(runs)
    if not args.skip_nll:
        nll_args = ["--role", "nll", "--learning-rate", str(args.learning_rate)]
        nll_args += ["--save-params", os.path.abspath(args.save_params)] if args.save_params else []
        out["nll"] = run_once(script, nll_args + (["--quick"] if args.quick else []))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print_summary(out)
    print(f"results: {args.out}")


def print_summary(out: dict) -> None:
    for mode, timing in out.get("timing", {}).items():
        print(f"\ntime per epoch, {mode} (40 minibatches of 100, 500 hidden): median wall "
              "[fastest epoch] (CPU time)")
        for name, t in timing.items():
            if name == "others_cpu":
                continue
            extra = (f"  sklearn/gmzoo rbm_pcd = {t['ratio_vs_rbm_pcd']:.2f} "
                     f"[{t['best_ratio_vs_rbm_pcd']:.2f}] (CPU {t['cpu_ratio_vs_rbm_pcd']:.2f})"
                     if "ratio_vs_rbm_pcd" in t else f"  compile {t['compile_s']:.1f} s")
            print(f"  {name:18s} {t['ms_per_epoch']:8.0f} ms [{t['best_ms_per_epoch']:.0f}] "
                  f"({t['cpu_ms_per_epoch']:.0f}){extra}")
        print(f"  others' CPU share during the runs: "
              f"{', '.join('-' if x is None else f'{x:.2f}' for x in timing['others_cpu'])}")
    if "nll" in out:
        n = out["nll"]
        rep = n["report"]
        print(f"\nscikit-learn BernoulliRBM ({n['sklearn']['method']}, lr {n['sklearn']['learning_rate']}, "
              f"{n['sklearn']['epochs']} epochs; trained in {n['train_s']:.0f} s), scored by gmzoo's AIS:")
        for m in n["likelihood_table"]:
            print(f"  test NLL, {m['bound']:40s} {m['nll_nats']:.2f} nats")
        print(f"  test NLL, report's AIS (training marginals)  {rep['test NLL nats (AIS)']:.2f} "
              f"+- {rep['test NLL standard error nats']:.2f} (log Z {rep['log Z (AIS)']:.2f} +- "
              f"{rep['log Z standard error (AIS, over chains)']:.2f}, ESS "
              f"{rep['AIS effective sample size']:.1f}); train NLL {rep['train NLL nats (AIS)']:.2f}")
        for name, b in n["baselines"].items():
            print(f"  baseline {name}: {b['nats']:.2f} nats" if "nats" in b else f"  baseline {name}: {b}")
        print(f"  RMS weight change per update (last epoch): {n['rms_weight_update_last_epoch']}")


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 epochs, small AIS: a smoke run, not figures")
    p.add_argument("--learning-rate", type=float, default=SKLEARN_LR,
                   help=f"BernoulliRBM's learning_rate (default {SKLEARN_LR}, its own default)")
    p.add_argument("--repeats", type=int, default=3, help="timing runs per framework, alternating")
    p.add_argument("--out", default=os.path.join(HERE, "results", "rbm_sklearn.json"))
    p.add_argument("--save-params", default="", help="write the converted params here (.npz)")
    p.add_argument("--skip-timing", action="store_true")
    p.add_argument("--skip-nll", action="store_true")
    p.add_argument("--modes", default="", help=f"timing modes, comma-separated: {', '.join(MODES)} "
                   "(default: all)")
    p.add_argument("--one-core", action="store_true", help=argparse.SUPPRESS)  # read at import
    p.add_argument("--role", choices=("nll", "sklearn", "gmzoo"), help=argparse.SUPPRESS)
    p.add_argument("--model", default="rbm_pcd", help=argparse.SUPPRESS)
    p.add_argument("--time-epochs", type=int, default=FULL["time_epochs"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick and args.repeats == 3:
        args.repeats = 1
    return args


if __name__ == "__main__":
    a = parse()
    if a.role is None:
        main(a)
    else:
        result = {"nll": run_nll, "sklearn": time_sklearn, "gmzoo": time_gmzoo}[a.role](a)
        print(json.dumps(result))
