"""gmzoo benchmarks: every figure is a ratio against a reference measured in the same run.

    python benchmarks/run.py [--only vae_mlp,ddpm_unet_small] [--repeats 5] [--quick] [--torch-compile]
    gmzoo bench -- [same flags]     (the "--": gmzoo's parser takes flags after "bench" as its own)
    python benchmarks/run.py --only ddpm_sampler_small,ddpm_sampler_medium [--num-steps 200]

Each run is its own process (torch and XLA thread pools fight over the cores); runs alternate
gmzoo, reference, gmzoo, reference, ... `--repeats` times; compile / warm-up is excluded from the
timed steps and reported apart. ratio = reference ms / gmzoo ms (> 1: gmzoo faster), from the
medians over the runs that other processes left alone ("clean"; all runs if none was), and from
the fastest timed block of all runs (steadier on a shared machine). JSON with every run goes to
benchmarks/results/<name>.json.

The GAN benchmarks (dcgan_digits, dcgan_mnist5k, wgan_gp_mnist5k; benchmarks/gan_step.py) time
one GAN step, k discriminator updates then one generator update and its EMA, batch 64: gmzoo's
step built as `gmzoo train dcgan|wgan_gp` builds it (recipe, loop.setup / init_state /
optimizer_and_step; the scan row is the loop's compile_steps(scan_steps(...)) call) against the
same players, losses, per-player Adam, k and EMA in torch. `python benchmarks/gan_step.py
--framework check --model dcgan --data digits` (not timed) copies gmzoo's initial parameters
into the torch twins and compares logits, outputs, losses and gradient norms.

The DDPM sampler benchmarks (ddpm_sampler_*, benchmarks/diffusion_sampler.py) time whole samples
of T denoising steps with gmzoo's compiled `ddpm_ancestral` against several references, each
variant in its own process, alternating: a lax.scan of T bare U-Net calls (the sampler's
overhead), T calls of one jitted U-Net call, a Python loop over a jitted `ddpm_step`, and torch
eager + diffusers' DDPMScheduler; plus the sampler's compile time at T = 1000 against T = 10.
They print their own table (ms per denoising step) with the target of each ratio.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TORCH_MISSING = ("torch is not installed; the reference rows need it: "
                 'pip install -e ".[bench]"  (or pip install torch==2.13.0)')
DIFFUSERS_MISSING = ("diffusers is not installed; the ddpm_sampler_* torch reference needs it: "
                     'pip install -e ".[bench]"  (or pip install diffusers==0.42.1)')
QUIET = 0.10  # a run is clean if other processes used under 10% of all cores meanwhile

# gmzoo = jax, reference = torch eager; steps = timed steps per run (full, quick); batch = the
# batch size unless --batch is given.
BENCHMARKS = {
    "vae_mlp": dict(script="vae_step.py", args=["--arch", "mlp"], steps=(200, 60), warmup=5, batch=100),
    "vae_conv": dict(script="vae_step.py", args=["--arch", "conv"], steps=(10, 3), warmup=2, batch=100),
    # DDPM U-Net on 8x8x1 digits: 0.18M / 0.43M params, L_simple, linear betas, T = 1000.
    "ddpm_unet_small": dict(script="diffusion_step.py", args=["--size", "small"], steps=(100, 20), warmup=3,
                            batch=64),
    "ddpm_unet_medium": dict(script="diffusion_step.py", args=["--size", "medium"], steps=(40, 8), warmup=2,
                             batch=64),
    # GAN steps (benchmarks/gan_step.py): k D updates + one G update + G's EMA, the recipes' defaults
    # (latent 64, F 32, Adam 2e-4 b1 0.5): dcgan k = 1 (BN in both, non-saturating); wgan_gp k = 5
    # (Wasserstein critic without BN + 10 x gradient penalty, a double backward; Adam b2 0.9).
    "dcgan_digits": dict(script="gan_step.py", args=["--model", "dcgan", "--data", "digits", "--k", "1"],
                         steps=(200, 40), warmup=5, batch=64),
    "dcgan_mnist5k": dict(script="gan_step.py", args=["--model", "dcgan", "--data", "mnist5k", "--k", "1"],
                          steps=(40, 10), warmup=3, batch=64),
    "wgan_gp_mnist5k": dict(script="gan_step.py", args=["--model", "wgan_gp", "--data", "mnist5k", "--k", "5"],
                            steps=(12, 4), warmup=2, batch=64),
    # Gated PixelCNN (benchmarks/gated_pixelcnn_step.py), `gmzoo train gated_pixelcnn`'s step: the recipe's
    # network (F 64, 8 layers, 7x7 first kernel; 0.63M params), Bernoulli NLL on dynamically binarized
    # mnist5k, clip 1.0 + Adam warm-up/cosine + EMA 0.999: ~20 s/step on 2 shared cores, so few steps.
    # The small row: F 32, 4 layers (0.07M params).
    "gated_pixelcnn_mnist5k": dict(script="gated_pixelcnn_step.py", args=["--size", "default"], steps=(6, 2),
                                   warmup=1, batch=100),
    "gated_pixelcnn_small_mnist5k": dict(script="gated_pixelcnn_step.py", args=["--size", "small"],
                                         steps=(20, 6), warmup=2, batch=100),
    # Glow (benchmarks/glow_step.py), `gmzoo train glow`'s step: the recipe's flow (2 levels x 8 steps of
    # ActNorm, LU 1x1 conv, affine coupling with 128 hidden channels; split with a learned prior), logit
    # transform, mean NLL in nats of dequantized mnist5k, clip 1.0 + Adam warm-up/cosine + EMA 0.999.
    # The torch twin runs channels_last (NCHW's conv backward is ~5x slower here). Small row: 4 steps/level, 64 hidden.
    "glow_mnist5k": dict(script="glow_step.py", args=["--size", "default"], steps=(10, 3), warmup=1, batch=64),
    "glow_small_mnist5k": dict(script="glow_step.py", args=["--size", "small"], steps=(20, 6), warmup=2,
                               batch=64),
}

# DDPM sampling with the same U-Nets (benchmarks/diffusion_sampler.py), batch 64: (full, quick)
# T = denoising steps per sample (--num-steps), timed samples per run and untimed warm-up samples.
# T = 200, not 1000: a T = 1000 sample of the medium U-Net takes ~15-40 s on 2 shared cores, and
# the per-step figures do not depend on T (the scan's trip count is all that changes).
SAMPLERS = {
    "ddpm_sampler_small": dict(size="small", num_steps=(200, 50), samples=(3, 2), warmup=(1, 0)),
    "ddpm_sampler_medium": dict(size="medium", num_steps=(200, 50), samples=(3, 2), warmup=(1, 0)),
}
SAMPLER_SCRIPT = "diffusion_sampler.py"
COMPILE_STEPS = (10, 1000)  # the sampler's compile time at T = 1000 against T = 10


def cpu_jiffies() -> tuple[int, int] | None:
    """(total, idle) CPU time of all cores so far, from /proc/stat (None where there is none)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(fields), fields[3] + fields[4]  # idle + iowait


def busy_fraction(before, after, own_cpu_s: float = 0.0, wall_s: float = 0.0) -> float | None:
    """Share of all cores that *other* processes used between two `cpu_jiffies` samples."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    busy = 1.0 - (after[1] - before[1]) / (after[0] - before[0])
    own = own_cpu_s / (wall_s * (os.cpu_count() or 1)) if wall_s else 0.0
    return max(0.0, busy - own)


def wait_quiet(max_wait: float) -> float | None:
    """Wait up to `max_wait` s until other processes leave the CPU; the last busy share seen.

    Other users' load leaks into the timings, torch eager's most (its OpenMP threads spin while
    a core is taken: 5-10x slower steps), so each run starts on a quiet machine when it can.
    """
    deadline = time.monotonic() + max_wait
    while True:
        before = cpu_jiffies()
        time.sleep(1.0)
        busy = busy_fraction(before, cpu_jiffies())
        if busy is None or busy < QUIET or time.monotonic() > deadline:
            return busy


def run_once(script: str, args: list[str]) -> dict:
    """Run `script` in a fresh process; its JSON line plus the CPU share others used meanwhile."""
    cmd = [sys.executable, os.path.join(HERE, script), *args]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    usage0, jiffies0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), cpu_jiffies(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall, usage1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no stderr)"]
        raise RuntimeError(f"{' '.join(cmd[1:])} failed (exit {proc.returncode}): {tail[0]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    own = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    result["others_cpu"] = busy_fraction(jiffies0, cpu_jiffies(), own, wall)
    return result


def clean(runs: list[dict]) -> list[dict]:
    """The runs other processes left alone, or all runs if there is none."""
    quiet = [r for r in runs if r["others_cpu"] is not None and r["others_cpu"] < QUIET]
    return quiet or runs


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in clean(runs))


def best(runs: list[dict], prefix: str) -> float:
    """Fastest timed block over all runs."""
    return min(r[prefix + "best_ms_per_step"] for r in runs)


def bench(name: str, opts: argparse.Namespace) -> list[dict]:
    """Alternate gmzoo / reference runs; returns the table rows of benchmark `name`."""
    spec = BENCHMARKS[name]
    steps = opts.steps or spec["steps"][opts.quick]
    batch = spec["batch"] if opts.batch is None else opts.batch
    common = [*spec["args"], "--batch", str(batch), "--steps", str(steps),
              "--warmup", str(spec["warmup"]), "--blocks", str(opts.blocks)]
    scan = opts.scan
    frameworks = {"gmzoo": ["--framework", "jax", "--scan", str(scan)], "torch": ["--framework", "torch"]}
    if opts.torch_compile:
        frameworks["torch_compile"] = ["--framework", "torch_compile"]
    runs: dict[str, list[dict]] = {k: [] for k in frameworks}
    for r in range(opts.repeats):
        for label, extra in frameworks.items():  # alternate: gmzoo, torch, gmzoo, torch, ...
            wait_quiet(opts.max_wait)
            result = run_once(spec["script"], common + extra)
            runs[label].append(result)
            scan_note = f", scan {result['scan_ms_per_step']:.2f}" if "scan_ms_per_step" in result else ""
            others = "?" if result["others_cpu"] is None else f"{result['others_cpu']:.0%}"
            print(f"  {name} run {r + 1}/{opts.repeats} {label}: {result['ms_per_step']:.2f} ms/step"
                  f"{scan_note}, {result['params']:,} params (other processes: {others} of the CPU)",
                  file=sys.stderr, flush=True)
    n_jax, n_torch = runs["gmzoo"][0]["params"], runs["torch"][0]["params"]
    assert n_jax == n_torch, f"{name}: parameter counts differ, gmzoo {n_jax} vs torch {n_torch}"

    def row(benchmark, prefix, ref_label, ref_runs, compile_key):
        gm, ref = median(runs["gmzoo"], prefix + "ms_per_step"), median(ref_runs, "ms_per_step")
        return {"benchmark": benchmark, "ref": ref_label, "gmzoo_ms": gm, "ref_ms": ref,
                "ratio": ref / gm, "best_ratio": best(ref_runs, "") / best(runs["gmzoo"], prefix),
                "compile_s": median(runs["gmzoo"], compile_key),
                "clean_runs": f"{len(clean(runs['gmzoo']))}/{len(clean(ref_runs))}"}

    rows = [row(f"{name} (jit step)", "", "torch eager", runs["torch"], "compile_s")]
    if scan:
        label = f"{name} (scan_steps K={scan}{', as gmzoo train' if scan == 1 else ''})"
        rows.append(row(label, "scan_", "torch eager", runs["torch"], "scan_compile_s"))
    if "torch_compile" in runs:  # reported apart: its own compile time is the point
        rows.append(row(f"{name} (jit step)", "", "torch.compile", runs["torch_compile"], "compile_s"))
        rows[-1]["ref_compile_s"] = median(runs["torch_compile"], "compile_s")
    noisy = sum(r["others_cpu"] is None or r["others_cpu"] >= QUIET for rs in runs.values() for r in rs)
    for r in rows:
        r["noisy_runs"] = noisy

    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    record = {
        "name": name, "time": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(__file__, ROOT), *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "params": n_jax, "batch": batch, "steps_per_run": steps, "repeats": opts.repeats,
        "rows": rows, "runs": runs,
    }
    with open(os.path.join(HERE, "results", f"{name}.json"), "w") as f:
        json.dump(record, f, indent=2)
    return rows


def bench_sampler(name: str, opts: argparse.Namespace) -> list[dict]:
    """Alternate the DDPM sampler variants, one process each; returns the rows of `name`."""
    spec = SAMPLERS[name]
    T = opts.num_steps or spec["num_steps"][opts.quick]
    batch = 64 if opts.batch is None else opts.batch
    common = ["--size", spec["size"], "--batch", str(batch), "--samples", str(spec["samples"][opts.quick]),
              "--warmup", str(spec["warmup"][opts.quick])]
    variants = {v: ["--variant", v, "--num-steps", str(T)] for v in ("sampler", "loop", "bare_scan", "net")}
    variants["torch"] = ["--variant", "torch", "--num-steps", str(T), "--threads", str(opts.torch_threads)]
    for c in COMPILE_STEPS:
        variants[f"compile_T{c}"] = ["--variant", "compile", "--num-steps", str(c)]
    runs: dict[str, list[dict]] = {k: [] for k in variants}
    for r in range(opts.repeats):
        for label, extra in variants.items():  # alternate: sampler, loop, ..., sampler, loop, ...
            wait_quiet(opts.max_wait)
            result = run_once(SAMPLER_SCRIPT, common + extra)
            runs[label].append(result)
            others = "?" if result["others_cpu"] is None else f"{result['others_cpu']:.0%}"
            timing = (f"{result['ms_per_step']:.2f} ms/step (T={T}), first call {result['compile_s']:.1f} s"
                      if "ms_per_step" in result else f"compile {result['compile_s']:.2f} s")
            print(f"  {name} run {r + 1}/{opts.repeats} {label}: {timing}, {result['params']:,} params "
                  f"(other processes: {others} of the CPU)", file=sys.stderr, flush=True)
    counts = {label: rs[0]["params"] for label, rs in runs.items()}
    assert len(set(counts.values())) == 1, f"{name}: parameter counts differ: {counts}"
    bad = [label for label, rs in runs.items() for r in rs if r.get("finite") is False]
    if bad:
        print(f"  {name}: non-finite samples in {sorted(set(bad))} (timings kept)", file=sys.stderr)

    def row(what, label, ref, ref_label, target, lo=None):
        gm, rf = median(runs[label], "ms_per_step"), median(runs[ref], "ms_per_step")
        ratio = rf / gm
        return {"benchmark": f"{name} {what}", "ref": ref_label, "unit": "ms/step", "gmzoo": gm, "reference": rf,
                "ratio": ratio, "best_ratio": best(runs[ref], "") / best(runs[label], ""),
                "target": target, "met": None if lo is None else ratio >= lo,
                "clean_runs": f"{len(clean(runs[label]))}/{len(clean(runs[ref]))}"}

    sampler = f"(ddpm_ancestral, T={T})"
    rows = [
        row(sampler, "sampler", "bare_scan", f"lax.scan of {T} bare U-Net calls", ">= 0.95 (overhead <= 5%)", 0.95),
        row(sampler, "sampler", "net", f"{T} x one jitted U-Net call", "-"),
        row(sampler, "sampler", "loop", f"Python loop, jitted ddpm_step x {T}", "-"),
        row(sampler, "sampler", "torch", f"torch eager ({opts.torch_threads} thr) + diffusers DDPMScheduler",
            "> 1", 1.0 + 1e-9),
    ]
    small, big = (f"compile_T{c}" for c in COMPILE_STEPS)
    c_small, c_big = median(runs[small], "compile_s"), median(runs[big], "compile_s")
    lo = 1 / 1.5
    rows.append({"benchmark": f"{name} compile (ddpm_ancestral, T={COMPILE_STEPS[1]})",
                 "ref": f"compile at T={COMPILE_STEPS[0]}", "unit": "s", "gmzoo": c_big, "reference": c_small,
                 "ratio": c_small / c_big,
                 "best_ratio": min(r["compile_s"] for r in runs[small]) / min(r["compile_s"] for r in runs[big]),
                 "target": f">= {lo:.2f} (T={COMPILE_STEPS[1]} <= 1.5x)", "met": c_small / c_big >= lo,
                 "clean_runs": f"{len(clean(runs[big]))}/{len(clean(runs[small]))}"})
    noisy = sum(r["others_cpu"] is None or r["others_cpu"] >= QUIET for rs in runs.values() for r in rs)
    for r in rows:
        r["noisy_runs"] = noisy
        r["first_call_s"] = median(runs["sampler"], "compile_s")

    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    record = {
        "name": name, "time": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(__file__, ROOT), *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "params": counts["sampler"], "batch": batch, "num_steps": T, "compile_steps": COMPILE_STEPS,
        "repeats": opts.repeats, "rows": rows, "runs": runs,
    }
    with open(os.path.join(HERE, "results", f"{name}.json"), "w") as f:
        json.dump(record, f, indent=2)
    return rows


def print_rows(head: tuple[str, ...], lines: list[tuple[str, ...]]) -> None:
    """A plain-text table, columns padded to their widest cell."""
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    for i, line in enumerate([head, *lines]):
        print(" | ".join(x.ljust(w) for x, w in zip(line, widths)))
        if i == 0:
            print("-+-".join("-" * w for w in widths))


def print_sampler_table(rows: list[dict]) -> None:
    head = ("benchmark", "reference", "unit", "gmzoo", "reference", "ratio", "best-block ratio", "target",
            "met", "clean runs")
    lines = [(r["benchmark"], r["ref"], r["unit"], f"{r['gmzoo']:.2f}", f"{r['reference']:.2f}",
              f"{r['ratio']:.2f}", f"{r['best_ratio']:.2f}", r["target"],
              {None: "-", True: "yes", False: "NO"}[r["met"]], r["clean_runs"]) for r in rows]
    print_rows(head, lines)
    print("DDPM sampling: ms per denoising step (one U-Net evaluation; a whole sample is T of them), "
          "batch 64, random fixed params; ratio = reference / gmzoo (> 1: gmzoo faster); the sampler "
          "overhead is 1 / ratio of the bare-scan row. Compile rows: seconds, trace + XLA compile.")
    noisy = max(r["noisy_runs"] for r in rows)
    if noisy:
        print(f"warning: other processes used the CPU during {noisy} runs; prefer the best-block ratio "
              "or rerun on a quiet machine (torch with 2 threads slows most: try --torch-threads 1).")


def print_table(rows: list[dict]) -> None:
    head = ("benchmark", "reference", "gmzoo ms/step", "ref ms/step", "ratio", "best-block ratio",
            "gmzoo compile s", "clean runs")
    lines = [(r["benchmark"], r["ref"] + (f" (compile {r['ref_compile_s']:.0f} s)" if "ref_compile_s" in r else ""),
              f"{r['gmzoo_ms']:.2f}", f"{r['ref_ms']:.2f}", f"{r['ratio']:.2f}", f"{r['best_ratio']:.2f}",
              f"{r['compile_s']:.1f}", r["clean_runs"]) for r in rows]
    print_rows(head, lines)
    print("ratio = reference ms / gmzoo ms (> 1: gmzoo faster), medians over clean alternating runs "
          "(gmzoo/ref counts; all runs if none was clean); best-block ratio: from the fastest timed "
          "block of all runs.")
    noisy = max(r["noisy_runs"] for r in rows)
    if noisy:
        print(f"warning: other processes used the CPU during {noisy} runs; torch eager slows 5-10x "
              "then, so prefer the best-block ratio or rerun on a quiet machine.")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join([*BENCHMARKS, *SAMPLERS]),
                   help=f"comma-separated benchmarks to run, from: {', '.join([*BENCHMARKS, *SAMPLERS])}")
    p.add_argument("--repeats", type=int, default=None, help="alternating runs per framework (default 5, quick 2)")
    p.add_argument("--quick", action="store_true", help="fewer repeats and steps (about 2 minutes)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per run (default per benchmark)")
    p.add_argument("--blocks", type=int, default=10, help="timed blocks per run (the fastest is kept too)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default per benchmark: 100, DDPM and GAN 64)")
    p.add_argument("--scan", type=int, default=None,
                   help="also time gmzoo's scan_steps with K steps per call, the compiled call of "
                        "`gmzoo train` (train.steps_per_call=K; default 1, quick 0 = off)")
    p.add_argument("--max-wait", type=float, default=None,
                   help="seconds to wait before each run for other processes to leave the CPU (default 60, quick 5)")
    p.add_argument("--torch-compile", action="store_true",
                   help="add a torch.compile reference row (it compiles for 30-60 s per run; train steps only)")
    p.add_argument("--num-steps", type=int, default=None,
                   help="T, denoising steps per sample of the ddpm_sampler_* rows (default 200, quick 50); "
                        "--steps, --blocks and --scan do not apply to them")
    p.add_argument("--torch-threads", type=int, default=2,
                   help="torch intra-op threads of the ddpm_sampler_* reference (the train-step scripts use 2)")
    argv = sys.argv[1:] if argv is None else list(argv)
    opts = p.parse_args(argv[1:] if argv[:1] == ["--"] else argv)  # `gmzoo bench -- --quick`
    opts.repeats = opts.repeats or (2 if opts.quick else 5)
    opts.scan = (0 if opts.quick else 1) if opts.scan is None else opts.scan
    opts.max_wait = (5.0 if opts.quick else 60.0) if opts.max_wait is None else opts.max_wait
    names = [n.strip() for n in opts.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS and n not in SAMPLERS]
    if unknown or not names:
        p.error(f"--only takes names from {', '.join([*BENCHMARKS, *SAMPLERS])}, got {opts.only!r}")
    if (opts.num_steps is not None and opts.num_steps < 1) or opts.torch_threads < 1:
        p.error("--num-steps and --torch-threads must be positive")
    if min(opts.repeats, opts.batch or 1, opts.blocks, opts.steps or 1) < 1 or opts.batch == 0 or opts.scan < 0:
        p.error("--repeats, --batch, --blocks and --steps must be positive, --scan >= 0")
    if importlib.util.find_spec("torch") is None:
        print(TORCH_MISSING, file=sys.stderr)
        return 2
    if any(n in SAMPLERS for n in names) and importlib.util.find_spec("diffusers") is None:
        print(DIFFUSERS_MISSING, file=sys.stderr)
        return 2
    rows, sampler_rows = [], []
    for name in names:
        try:
            if name in SAMPLERS:
                sampler_rows += bench_sampler(name, opts)
            else:
                rows += bench(name, opts)
        except (RuntimeError, AssertionError) as e:
            print(f"{name}: {e}", file=sys.stderr)
            return 1
    if rows:
        print_table(rows)
    if sampler_rows:
        if rows:
            print()
        print_sampler_table(sampler_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
