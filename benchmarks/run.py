"""gmzoo benchmarks: every figure is a ratio against a reference measured in the same run.

    python benchmarks/run.py [--only vae_mlp,vae_conv] [--repeats 5] [--quick] [--torch-compile]
    gmzoo bench -- [same flags]     (the "--": gmzoo's parser takes flags after "bench" as its own)

Each run is its own process (torch and XLA thread pools fight over the cores); runs alternate
gmzoo, reference, gmzoo, reference, ... `--repeats` times; compile / warm-up is excluded from the
timed steps and reported apart. ratio = reference ms / gmzoo ms (> 1: gmzoo faster), from the
medians over the runs that other processes left alone ("clean"; all runs if none was), and from
the fastest timed block of all runs (steadier on a shared machine). JSON with every run goes to
benchmarks/results/<name>.json.
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
QUIET = 0.10  # a run is clean if other processes used under 10% of all cores meanwhile

# gmzoo = jax, reference = torch eager; steps = timed steps per run (full, quick).
BENCHMARKS = {
    "vae_mlp": dict(script="vae_step.py", args=["--arch", "mlp"], steps=(200, 60), warmup=5),
    "vae_conv": dict(script="vae_step.py", args=["--arch", "conv"], steps=(10, 3), warmup=2),
}


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
    common = [*spec["args"], "--batch", str(opts.batch), "--steps", str(steps),
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
                  f"{scan_note} (other processes: {others} of the CPU)", file=sys.stderr, flush=True)
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
        "params": n_jax, "batch": opts.batch, "steps_per_run": steps, "repeats": opts.repeats,
        "rows": rows, "runs": runs,
    }
    with open(os.path.join(HERE, "results", f"{name}.json"), "w") as f:
        json.dump(record, f, indent=2)
    return rows


def print_table(rows: list[dict]) -> None:
    head = ("benchmark", "reference", "gmzoo ms/step", "ref ms/step", "ratio", "best-block ratio",
            "gmzoo compile s", "clean runs")
    lines = [(r["benchmark"], r["ref"] + (f" (compile {r['ref_compile_s']:.0f} s)" if "ref_compile_s" in r else ""),
              f"{r['gmzoo_ms']:.2f}", f"{r['ref_ms']:.2f}", f"{r['ratio']:.2f}", f"{r['best_ratio']:.2f}",
              f"{r['compile_s']:.1f}", r["clean_runs"]) for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    for i, line in enumerate([head, *lines]):
        print(" | ".join(x.ljust(w) for x, w in zip(line, widths)))
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    print("ratio = reference ms / gmzoo ms (> 1: gmzoo faster), medians over clean alternating runs "
          "(gmzoo/ref counts; all runs if none was clean); best-block ratio: from the fastest timed "
          "block of all runs.")
    noisy = max(r["noisy_runs"] for r in rows)
    if noisy:
        print(f"warning: other processes used the CPU during {noisy} runs; torch eager slows 5-10x "
              "then, so prefer the best-block ratio or rerun on a quiet machine.")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(BENCHMARKS),
                   help=f"comma-separated benchmarks to run, from: {', '.join(BENCHMARKS)}")
    p.add_argument("--repeats", type=int, default=None, help="alternating runs per framework (default 5, quick 2)")
    p.add_argument("--quick", action="store_true", help="fewer repeats and steps (about 2 minutes)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per run (default per benchmark)")
    p.add_argument("--blocks", type=int, default=10, help="timed blocks per run (the fastest is kept too)")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--scan", type=int, default=None,
                   help="also time gmzoo's scan_steps with K steps per call, the compiled call of "
                        "`gmzoo train` (train.steps_per_call=K; default 1, quick 0 = off)")
    p.add_argument("--max-wait", type=float, default=None,
                   help="seconds to wait before each run for other processes to leave the CPU (default 60, quick 5)")
    p.add_argument("--torch-compile", action="store_true",
                   help="add a torch.compile reference row (it compiles for 30-60 s per run)")
    argv = sys.argv[1:] if argv is None else list(argv)
    opts = p.parse_args(argv[1:] if argv[:1] == ["--"] else argv)  # `gmzoo bench -- --quick`
    opts.repeats = opts.repeats or (2 if opts.quick else 5)
    opts.scan = (0 if opts.quick else 1) if opts.scan is None else opts.scan
    opts.max_wait = (5.0 if opts.quick else 60.0) if opts.max_wait is None else opts.max_wait
    names = [n.strip() for n in opts.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown or not names:
        p.error(f"--only takes names from {', '.join(BENCHMARKS)}, got {opts.only!r}")
    if min(opts.repeats, opts.batch, opts.blocks, opts.steps or 1) < 1 or opts.scan < 0:
        p.error("--repeats, --batch, --blocks and --steps must be positive, --scan >= 0")
    if importlib.util.find_spec("torch") is None:
        print(TORCH_MISSING, file=sys.stderr)
        return 2
    rows = []
    for name in names:
        try:
            rows += bench(name, opts)
        except (RuntimeError, AssertionError) as e:
            print(f"{name}: {e}", file=sys.stderr)
            return 1
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
