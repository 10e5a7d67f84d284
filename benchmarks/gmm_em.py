"""EM per iteration: gmzoo's compiled EM step against scikit-learn's ``GaussianMixture``, on the
same data from the same initial parameters.

    python benchmarks/gmm_em.py [--quick] [--repeats R] [--cases digits,points_k10,...]

Cases (full covariances, reg_covar 1e-6):
  digits       1,437 x 64: the digits training split dequantized once (gmzoo's data space,
               [0, 1], fixed key), K = 10, the ``gmm`` recipe's shape
  points_kK    100,000 x 2 drawn from the grid25 mixture (25 Gaussians, std 0.05), K = 10, 30, 100

For each case one process ("prep") draws the data and gmzoo's initialisation (the family's
``kmeans.init_params``: greedy k-means++, 10 Lloyd steps, the clusters' moments) and saves both;
then, each in its own process, alternating ``--repeats`` times:
  gmzoo    the family's train step (``Recipe.train_step`` of gmm/gmm_toy with one draw: E-step
           sufficient statistics, M-step, finiteness guard on the TrainState), ``jax.jit`` with
           the state donated and called once per iteration from Python, as ``gmzoo train``
           (train.steps_per_call=1) calls it; and ``em.fit``, the N iterations as one
           ``lax.scan`` (one call). float32, as the family runs.
  sklearn  ``GaussianMixture(weights_init, means_init, precisions_init = U U^T, tol=0,
           init_params="random_from_data")`` in float64, with OpenBLAS's default threads (one
           per core) and with 1 thread in every pool (threadpoolctl): the EM loop of ``fit`` (``_e_step``,
           ``_m_step``, ``_compute_lower_bound`` per iteration, exactly what ``fit`` runs) timed
           per iteration. What ``fit(max_iter=N)`` adds to the N iterations is timed apart as
           "fit overhead": input checks, the initialisation (the init_params responsibilities,
           which the given *_init then override, and the precisions' Cholesky) and the final
           E-step that ``fit`` always runs.
  check    gmzoo's ``em.fit`` in float64 (jax_enable_x64) from the same initialisation, not timed:
           the log-likelihoods must equal scikit-learn's to float64 rounding.

Every timed block restarts from the initial parameters and runs N iterations; ms/iteration is the
median over all blocks of all runs, "best" the fastest block (steadier on a shared machine).
ratio = sklearn ms / gmzoo ms (> 1: gmzoo faster). Compile time (trace + XLA compile) is
reported apart and excluded. The log-likelihood rows compare the mean log-likelihood per point
of the parameters after N iterations and the largest gap along the N per-iteration values
(scikit-learn's ``lower_bounds_``). JSON with every run: benchmarks/results/gmm_em.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REG_COVAR = 1e-6
# case -> (data, K, iterations per timed block (full, quick), timed blocks per run (full, quick))
CASES = {
    "digits": dict(data="digits", k=10, iters=(50, 20), blocks=(5, 3)),
    "points_k10": dict(data="points", k=10, iters=(20, 10), blocks=(5, 3)),
    "points_k30": dict(data="points", k=30, iters=(10, 5), blocks=(4, 2)),
    "points_k100": dict(data="points", k=100, iters=(5, 3), blocks=(3, 2)),
}
NUM_POINTS = 100_000


# --- workers (each in its own process) ---------------------------------------------------------

def prep(case: str, out: str) -> dict:
    """Draw the case's data and gmzoo's initial parameters; save them to ``out`` (npz)."""
    import jax
    import jax.numpy as jnp

    from gmzoo.config import DataConfig
    from gmzoo.data import registry, toys
    from gmzoo.data.preprocess import make_data_space
    from gmzoo.families.gmm import kmeans

    spec = CASES[case]
    if spec["data"] == "digits":
        src = registry.load("digits", "train")
        space = make_data_space(DataConfig(name="digits", dequantize=True), src.num_levels)
        batch = {"image": jnp.asarray(src.images, jnp.float32),
                 "label": jnp.asarray(src.labels, jnp.int32)}
        x = space.prepare(batch, jax.random.key(0))["image"].reshape(len(src), -1)  # [1437, 64]
    else:
        centres = toys.grid_centres(5, 2.0)  # [25, 2]
        k_key, n_key = jax.random.split(jax.random.key(0))
        comp = jax.random.randint(k_key, (NUM_POINTS,), 0, centres.shape[0])
        x = centres[comp] + 0.05 * jax.random.normal(n_key, (NUM_POINTS, 2))  # [N, 2]
    x = jnp.asarray(x, jnp.float32)
    start = time.perf_counter()
    p = kmeans.init_params(jax.random.key(1), x, spec["k"], "full", reg_covar=REG_COVAR)
    p = jax.block_until_ready(p)
    init_s = time.perf_counter() - start
    np.savez(out, x=np.asarray(x), **{k: np.asarray(v) for k, v in p.items()})
    return {"n": int(x.shape[0]), "d": int(x.shape[1]), "k": spec["k"],
            "init_s_incl_compile": init_s}


def _load(path: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    z = np.load(path)
    return z["x"], {k: z[k] for k in ("weights", "means", "precisions_cholesky")}


def run_gmzoo(case: str, data: str, iters: int, blocks: int) -> dict:
    """Time the family's jitted train step (N calls) and ``em.fit`` (one scan of N) in float32."""
    import jax
    import jax.numpy as jnp

    from gmzoo.families.gmm import em
    from gmzoo.families.gmm.family import RECIPES
    from gmzoo.train.state import TrainState

    x_np, p0 = _load(data)
    n, d = x_np.shape
    k = p0["weights"].shape[0]
    recipe = {r.name: r for r in RECIPES}["gmm" if CASES[case]["data"] == "digits" else "gmm_toy"]
    cfg = recipe.default()
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_components=k,
                                                             reg_covar=REG_COVAR))
    # event shape [D]: one draw per step (the data are already dequantized: the same x as sklearn)
    gmm = recipe.build(cfg.model, (d,), 0)
    assert gmm.noise_draws == 1 and gmm.covariance_type == "full" and not gmm.whiten
    tx, step_fn = recipe.train_step(cfg, gmm, prepare=lambda batch, key: batch,
                                    compute_dtype=jnp.float32, with_model_state=False)
    x = jnp.asarray(x_np)
    batch = {"image": x, "label": jnp.zeros((n,), jnp.int32)}
    params0 = {"mixture": {kk: jnp.asarray(v) for kk, v in p0.items()}}
    key = jax.random.key(1)  # the step's key (unused: no noise to draw)

    def fresh():  # a new state (its arrays are donated to the step)
        return TrainState.create(params=params0, tx=tx, key=jax.random.key(0))

    step = jax.jit(step_fn, donate_argnums=0)
    t0 = time.perf_counter()
    step_c = step.lower(fresh(), batch, key).compile()
    compile_s = time.perf_counter() - t0
    fit = jax.jit(functools.partial(em.fit, covariance_type="full", num_steps=iters,
                                    reg_covar=REG_COVAR))
    t0 = time.perf_counter()
    fit_c = fit.lower(params0["mixture"], x).compile()
    scan_compile_s = time.perf_counter() - t0

    def loop(state):
        metrics = []
        for _ in range(iters):
            state, m = step_c(state, batch, key)
            metrics.append(m)
        return jax.block_until_ready(state), metrics

    jax.block_until_ready(loop(fresh()))  # warm-up: first-call allocations
    step_ms, scan_ms, step_cpu_ms, scan_cpu_ms, metrics, state = [], [], [], [], None, None
    for _ in range(blocks):
        s = fresh()
        jax.block_until_ready(s)
        t0, c0 = time.perf_counter(), time.process_time()
        state, metrics = loop(s)
        step_ms.append((time.perf_counter() - t0) * 1e3 / iters)
        step_cpu_ms.append((time.process_time() - c0) * 1e3 / iters)
        m0 = jax.tree.map(jnp.copy, params0["mixture"])
        jax.block_until_ready(m0)
        t0, c0 = time.perf_counter(), time.process_time()
        fitted, fit_lls = jax.block_until_ready(fit_c(m0, x))
        scan_ms.append((time.perf_counter() - t0) * 1e3 / iters)
        scan_cpu_ms.append((time.process_time() - c0) * 1e3 / iters)
    final = state.params["mixture"]
    lls = [-float(m["loss"]) for m in metrics]  # mean log-likelihood before each step
    final_ll = float(jnp.mean(em.log_prob(final, x, "full")))
    return {"step_ms": step_ms, "scan_ms": scan_ms, "step_cpu_ms": step_cpu_ms,
            "scan_cpu_ms": scan_cpu_ms, "compile_s": compile_s,
            "scan_compile_s": scan_compile_s, "lls": lls, "final_ll": final_ll,
            "scan_lls": [float(v) for v in fit_lls],
            "scan_final_ll": float(jnp.mean(em.log_prob(fitted, x, "full"))),
            "steps_finite": sum(bool(m["finite"]) for m in metrics), "params_finite": bool(
                all(np.isfinite(np.asarray(v)).all() for v in final.values()))}


def _sklearn_model(x: np.ndarray, p0: dict[str, np.ndarray], iters: int):
    from sklearn.mixture import GaussianMixture

    u = p0["precisions_cholesky"].astype(np.float64)  # [K, D, D], Sigma^-1 = U U^T
    w = p0["weights"].astype(np.float64)
    return GaussianMixture(
        n_components=len(w), covariance_type="full", tol=0.0, reg_covar=REG_COVAR,
        max_iter=iters, init_params="random_from_data", random_state=0,
        weights_init=w / w.sum(),  # float32 weights sum to 1 +- 1e-7; sklearn checks 1e-8
        means_init=p0["means"].astype(np.float64), precisions_init=u @ np.swapaxes(u, -1, -2))


def run_sklearn(case: str, data: str, iters: int, blocks: int, threads: int = 0) -> dict:
    """Time scikit-learn's EM loop per iteration and what ``fit`` adds to it, in float64, with
    ``threads`` threads in every pool (0: the libraries' defaults, one per core)."""
    import scipy.linalg  # noqa: F401  (load scipy's own OpenBLAS before limiting the pools)
    import sklearn.mixture  # noqa: F401
    from threadpoolctl import threadpool_info, threadpool_limits

    if threads:  # every pool loaded by now: numpy's and scipy's OpenBLAS, sklearn's OpenMP
        with threadpool_limits(limits=threads):
            return run_sklearn(case, data, iters, blocks)
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.utils._array_api import get_namespace

    warnings.simplefilter("ignore", ConvergenceWarning)  # tol=0 never "converges"
    x_np, p0 = _load(data)
    x = x_np.astype(np.float64)
    xp, _ = get_namespace(x)  # numpy: the namespace fit passes to its steps
    gm = _sklearn_model(x, p0, iters)
    t0 = time.perf_counter()
    gm.fit(x)  # warm-up, and the reference trajectory
    fit_ms = (time.perf_counter() - t0) * 1e3
    lower_bounds = [float(v) for v in gm.lower_bounds_]
    final_ll = float(gm.score(x))
    loop_ms, loop_cpu_ms, overhead_ms, loop_lbs = [], [], [], []
    for _ in range(blocks):
        # what fit does around its loop, timed apart: the checks and the initialisation (the
        # init_params responsibilities, then the given *_init and the precisions' Cholesky) ...
        t0 = time.perf_counter()
        start = _sklearn_model(x, p0, iters)
        start._check_parameters(x, xp=xp)
        start._initialize_parameters(x, np.random.RandomState(0), xp=xp)
        init_ms = (time.perf_counter() - t0) * 1e3
        t0, c0 = time.perf_counter(), time.process_time()
        loop_lbs = []
        for _ in range(iters):  # the body of BaseMixture.fit_predict's loop
            log_prob_norm, log_resp = start._e_step(x, xp=xp)
            start._m_step(x, log_resp, xp=xp)
            loop_lbs.append(float(start._compute_lower_bound(log_resp, log_prob_norm)))
        loop_ms.append((time.perf_counter() - t0) * 1e3 / iters)
        loop_cpu_ms.append((time.process_time() - c0) * 1e3 / iters)
        t0 = time.perf_counter()
        start._e_step(x, xp=xp)  # ... and the final E-step fit always runs
        overhead_ms.append(init_ms + (time.perf_counter() - t0) * 1e3)
    assert np.allclose(loop_lbs, lower_bounds, rtol=0, atol=1e-9), "loop differs from fit"
    blas = [(i.get("internal_api"), i.get("architecture"), i.get("num_threads"))
            for i in threadpool_info()]
    return {"loop_ms": loop_ms, "loop_cpu_ms": loop_cpu_ms, "fit_ms": [fit_ms],
            "overhead_ms": overhead_ms, "lls": lower_bounds, "final_ll": final_ll,
            "blas": blas}


def run_check64(case: str, data: str, iters: int) -> dict:
    """gmzoo's ``em.fit`` in float64 from the same initialisation (not timed)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from gmzoo.families.gmm import em

    x_np, p0 = _load(data)
    u = p0["precisions_cholesky"].astype(np.float64)
    w = p0["weights"].astype(np.float64)
    # the same parameters sklearn starts from (its factor of U U^T is another square root of
    # the same precision; the densities agree to float64 rounding)
    params = {"weights": jnp.asarray(w / w.sum()), "means": jnp.asarray(p0["means"], jnp.float64),
              "precisions_cholesky": jnp.asarray(u)}
    x = jnp.asarray(x_np, jnp.float64)
    fitted, lls = jax.jit(em.fit, static_argnames=("covariance_type", "num_steps"))(
        params, x, covariance_type="full", num_steps=iters, reg_covar=REG_COVAR)
    return {"lls": [float(v) for v in lls],
            "final_ll": float(jnp.mean(em.log_prob(fitted, x, "full")))}


# --- driver ------------------------------------------------------------------------------------

def worker(args: list[str]) -> dict:
    """Run this file as a worker in a fresh process; its JSON line."""
    cmd = [sys.executable, os.path.abspath(__file__), *args]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise RuntimeError(f"{' '.join(args)} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def bench_case(case: str, opts, tmp: str) -> dict:
    spec = CASES[case]
    iters, blocks = spec["iters"][opts.quick], spec["blocks"][opts.quick]
    data = os.path.join(tmp, f"{case}.npz")
    meta = worker(["--worker", "prep", "--case", case, "--data", data])
    common = ["--case", case, "--data", data, "--iters", str(iters), "--blocks", str(blocks)]
    variants = {"gmzoo": ["--worker", "gmzoo"], "sklearn": ["--worker", "sklearn"],
                "sklearn_1t": ["--worker", "sklearn", "--threads", "1"]}
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(opts.repeats):
        for fw, extra in variants.items():  # alternate: gmzoo, sklearn, sklearn 1 thread, ...
            load0 = loadavg()
            res = worker([*extra, *common])
            res["loadavg"] = (load0, loadavg())
            runs[fw].append(res)
            ms = statistics.median(res["step_ms" if fw == "gmzoo" else "loop_ms"])
            print(f"  {case} run {r + 1}/{opts.repeats} {fw}: {ms:.2f} ms/iteration "
                  f"(load average {load0:.1f})", file=sys.stderr, flush=True)
    check = worker(["--worker", "check64", *common])
    g, s, s1 = runs["gmzoo"], runs["sklearn"], runs["sklearn_1t"]
    allv = lambda rs, key: [v for r in rs for v in r[key]]
    sk_lls = np.array(s[0]["lls"])
    row = {
        "case": case, "n": meta["n"], "d": meta["d"], "k": meta["k"], "iters": iters,
        "blocks_per_run": blocks, "repeats": opts.repeats,
        "gmzoo_step_ms": statistics.median(allv(g, "step_ms")), "gmzoo_step_best": min(allv(g, "step_ms")),
        "gmzoo_scan_ms": statistics.median(allv(g, "scan_ms")), "gmzoo_scan_best": min(allv(g, "scan_ms")),
        "sklearn_ms": statistics.median(allv(s, "loop_ms")), "sklearn_best": min(allv(s, "loop_ms")),
        "sklearn1_ms": statistics.median(allv(s1, "loop_ms")), "sklearn1_best": min(allv(s1, "loop_ms")),
        "gmzoo_step_cpu_ms": statistics.median(allv(g, "step_cpu_ms")),
        "gmzoo_scan_cpu_ms": statistics.median(allv(g, "scan_cpu_ms")),
        "sklearn_cpu_ms": statistics.median(allv(s, "loop_cpu_ms")),
        "sklearn1_cpu_ms": statistics.median(allv(s1, "loop_cpu_ms")),
        "sklearn_fit_ms": statistics.median(allv(s, "fit_ms")),
        "sklearn1_fit_ms": statistics.median(allv(s1, "fit_ms")),
        "compile_s": statistics.median(r["compile_s"] for r in g),
        "scan_compile_s": statistics.median(r["scan_compile_s"] for r in g),
        "init_s_incl_compile": meta["init_s_incl_compile"],
        "ll_gmzoo32": g[0]["final_ll"], "ll_sklearn64": s[0]["final_ll"], "ll_gmzoo64": check["final_ll"],
        "ll_scan32": g[0]["scan_final_ll"],
        "max_gap_32": float(np.max(np.abs(np.array(g[0]["lls"]) - sk_lls))),
        "max_gap_64": float(np.max(np.abs(np.array(check["lls"]) - sk_lls))),
        "ll_first": float(sk_lls[0]), "monotone_gmzoo32": bool(np.all(np.diff(g[0]["lls"]) >= -1e-4)),
        "steps_finite": g[0]["steps_finite"], "finite": g[0]["params_finite"],
        "blas": s[0]["blas"],
    }
    row["sklearn_fit_overhead_ms"] = statistics.median(allv(s, "overhead_ms"))
    row["sklearn1_fit_overhead_ms"] = statistics.median(allv(s1, "overhead_ms"))
    row["ratio"] = row["sklearn_ms"] / row["gmzoo_step_ms"]
    row["best_ratio"] = row["sklearn_best"] / row["gmzoo_step_best"]
    row["ratio1"] = row["sklearn1_ms"] / row["gmzoo_step_ms"]
    row["best_ratio1"] = row["sklearn1_best"] / row["gmzoo_step_best"]
    row["scan_ratio"] = min(row["sklearn_ms"], row["sklearn1_ms"]) / row["gmzoo_scan_ms"]
    row["runs"] = runs
    return row


def print_table(rows: list[dict]) -> None:
    head = ("case", "N x D, K", "iters", "gmzoo step ms/it", "gmzoo scan ms/it",
            "sklearn ms/it (BLAS default)", "sklearn ms/it (1 BLAS thread)",
            "ratio sk/gmzoo (best): default | 1 thread", "ratio faster sk/scan",
            "sklearn fit overhead ms: default | 1 thread",
            "CPU ms/it: gmzoo step | scan | sk default | sk 1 thread", "gmzoo compile s step/scan",
            "mean LL after N: gmzoo f32 | sklearn f64 | gap", "max gap along N: f32 | f64")
    lines = [(r["case"], f"{r['n']:,} x {r['d']}, {r['k']}", str(r["iters"]),
              f"{r['gmzoo_step_ms']:.2f} ({r['gmzoo_step_best']:.2f})",
              f"{r['gmzoo_scan_ms']:.2f} ({r['gmzoo_scan_best']:.2f})",
              f"{r['sklearn_ms']:.2f} ({r['sklearn_best']:.2f})",
              f"{r['sklearn1_ms']:.2f} ({r['sklearn1_best']:.2f})",
              f"{r['ratio']:.2f} ({r['best_ratio']:.2f}) | {r['ratio1']:.2f} ({r['best_ratio1']:.2f})",
              f"{r['scan_ratio']:.2f}",
              f"{r['sklearn_fit_overhead_ms']:.0f} | {r['sklearn1_fit_overhead_ms']:.0f}",
              f"{r['gmzoo_step_cpu_ms']:.1f} | {r['gmzoo_scan_cpu_ms']:.1f} | {r['sklearn_cpu_ms']:.1f} | "
              f"{r['sklearn1_cpu_ms']:.1f}",
              f"{r['compile_s']:.2f} / {r['scan_compile_s']:.2f}",
              f"{r['ll_gmzoo32']:.6f} | {r['ll_sklearn64']:.6f} | {r['ll_gmzoo32'] - r['ll_sklearn64']:.1e}",
              f"{r['max_gap_32']:.1e} | {r['max_gap_64']:.1e}") for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    for i, line in enumerate([head, *lines]):
        print(" | ".join(x.ljust(w) for x, w in zip(line, widths)))
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    print("ms per EM iteration: median over all timed blocks (fastest block in brackets); ratio = "
          "sklearn / gmzoo (> 1: gmzoo faster). gmzoo step: the family's jitted train step called "
          "once per iteration; scan: em.fit, N iterations in one lax.scan. sklearn: its fit loop "
          "per iteration (float64), with OpenBLAS's default threads and with 1 thread in every "
          "pool (threadpoolctl); "
          "fit overhead: what fit(max_iter=N) adds to N iterations, timed apart (checks, "
          "init_params responsibilities overridden by the *_init, precisions' Cholesky, final "
          "E-step). CPU ms/it: process CPU time "
          "(all threads; on a loaded machine steadier than wall time, but it counts BLAS/XLA "
          "threads that spin while waiting). LL: mean log-likelihood per "
          "point of the parameters after N iterations; max gap: largest |difference| of the N "
          "per-iteration values from sklearn's lower_bounds_ (gmzoo float32, and gmzoo float64 "
          "from the same start).")
    bad = [r["case"] for r in rows if not (r["finite"] and r["steps_finite"] == r["iters"])]
    if bad:
        print(f"warning: non-finite or dropped steps in {bad}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--quick", action="store_true", help="fewer iterations, blocks and repeats")
    p.add_argument("--repeats", type=int, default=None, help="alternating runs per framework (default 3, quick 1)")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    p.add_argument("--worker", choices=("prep", "gmzoo", "sklearn", "check64"), help=argparse.SUPPRESS)
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--iters", type=int, help=argparse.SUPPRESS)
    p.add_argument("--blocks", type=int, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.worker:
        fn = {"prep": lambda: prep(opts.case, opts.data),
              "gmzoo": lambda: run_gmzoo(opts.case, opts.data, opts.iters, opts.blocks),
              "sklearn": lambda: run_sklearn(opts.case, opts.data, opts.iters, opts.blocks,
                                             opts.threads),
              "check64": lambda: run_check64(opts.case, opts.data, opts.iters)}[opts.worker]
        print(json.dumps(fn()))
        return 0
    opts.repeats = opts.repeats or (1 if opts.quick else 3)
    cases = [c.strip() for c in opts.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown or not cases or opts.repeats < 1:
        p.error(f"--cases takes names from {', '.join(CASES)} and --repeats >= 1, got {opts.cases!r}")
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gmm_em_") as tmp:
        for case in cases:
            rows.append(bench_case(case, opts, tmp))
    print_table(rows)
    print(f"wall {time.perf_counter() - t0:.0f} s; load average at the end {loadavg():.1f} on "
          f"{os.cpu_count()} CPUs; sklearn's BLAS: {rows[0]['blas']}")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    record = {"name": "gmm_em", "time": datetime.datetime.now().isoformat(timespec="seconds"),
              "command": " ".join([os.path.relpath(__file__, ROOT), *(argv or sys.argv[1:])]),
              "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "python": platform.python_version()},
              "rows": rows}
    with open(os.path.join(HERE, "results", "gmm_em.json"), "w") as f:
        json.dump(record, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
