"""One DDPM sampling timing run in this process; prints one JSON line. Spawned by run.py.

    python benchmarks/diffusion_sampler.py --variant V --size small|medium --num-steps T

The network is the gmzoo U-Net (`SmallUNet` 0.18M / `MediumUNet` 0.43M params at 8x8x1), its
params random but fixed (the `init` params plus seeded noise: the zero-initialised output conv
would make every call return 0); one "step" is one denoising step, i.e. one network evaluation.
Variants (each in its own process; run.py alternates them):

    sampler    jax.jit of gmzoo.diffusion.samplers.ddpm_ancestral (one lax.scan over T steps),
               eps_fn = lambda x, t: unet.apply(params, x, t.astype(float32)), linear(T) betas
    loop       a Python loop calling one jitted gmzoo.diffusion.samplers.ddpm_step T times (the
               step also splits the key), as most JAX projects sample
    bare_scan  jax.jit of a lax.scan over T bare network calls x <- unet(x, t): the floor for
               `sampler` (its overhead = sampler / bare_scan)
    net        a Python loop calling one jitted network call T times (T x one compiled call)
    torch      the same U-Net in torch (benchmarks/diffusion_step.py `torch_unet`, same param
               count), eager under inference_mode, driven by diffusers' DDPMScheduler (same
               betas, posterior variance "fixed_small", no clipping); `--threads` intra-op threads
    compile    jax only: trace + compile time of the `sampler` function at T steps, nothing run

The params are arguments of the jitted functions (not closed-over constants XLA could fold).
Compile / the first call is excluded from the timed samples and reported apart (compile_s).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from diffusion_step import SIZES, torch_unet  # this folder is on sys.path when run as a script
from vae_step import timed

VARIANTS = ("sampler", "loop", "bare_scan", "net", "torch", "compile")
PARAM_NOISE = 0.05  # std of the seeded noise added to every parameter
HEIGHT, CHANNELS = 8, 1  # 8x8x1 digits-sized images


def linear_betas(num_steps: int) -> tuple[float, float]:
    """(beta_start, beta_end) of gmzoo.diffusion.schedules.linear(T): Ho et al.'s 1e-4..0.02 at
    T = 1000, rescaled by 1000 / T (end capped at 0.999)."""
    scale = 1000.0 / num_steps
    return scale * 1e-4, min(scale * 0.02, 0.999)


def run_jax(args) -> dict:
    import jax
    import jax.numpy as jnp

    from gmzoo.diffusion.samplers import ddpm_ancestral, ddpm_step
    from gmzoo.diffusion.schedules import linear
    from gmzoo.models.diffusion import MediumUNet, SmallUNet
    from gmzoo.nn.tree import param_count

    unet = {"small": SmallUNet, "medium": MediumUNet}[args.size]()
    for field, value in SIZES[args.size].items():
        assert getattr(unet, field) == value, f"SIZES[{args.size!r}][{field!r}] != {getattr(unet, field)}"
    T, B = args.num_steps, args.batch
    schedule = linear(T)
    x_T = jax.random.normal(jax.random.key(0), (B, HEIGHT, HEIGHT, CHANNELS), jnp.float32)
    params = jax.jit(unet.init)(jax.random.key(1), x_T, jnp.zeros((B,), jnp.float32))
    leaves, treedef = jax.tree.flatten(params)
    noise_keys = jax.random.split(jax.random.key(2), len(leaves))
    params = jax.tree.unflatten(treedef, [p + PARAM_NOISE * jax.random.normal(k, p.shape, p.dtype)
                                          for p, k in zip(leaves, noise_keys)])
    key = jax.random.key(3)
    out = {"params": param_count(params["params"]), "backend": jax.default_backend(), "version": jax.__version__}

    def eps_fn_of(params):
        return lambda x, t: unet.apply(params, x, t.astype(jnp.float32))

    def sample(params, key, x_T):
        return ddpm_ancestral(eps_fn_of(params), key, x_T, schedule)

    if args.variant == "compile":  # trace + compile only, at T = args.num_steps
        t0 = time.perf_counter()
        lowered = jax.jit(sample).lower(params, key, x_T)
        t1 = time.perf_counter()
        lowered.compile()
        t2 = time.perf_counter()
        out.update(trace_s=t1 - t0, xla_compile_s=t2 - t1, compile_s=t2 - t0)
        return out

    if args.variant == "sampler":
        run = jax.jit(sample)
    elif args.variant == "bare_scan":
        def bare(params, key, x):
            del key

            def body(x, t):
                return unet.apply(params, x, jnp.full((B,), t, jnp.float32)), None

            return jax.lax.scan(body, x, jnp.arange(T - 1, -1, -1, dtype=jnp.int32))[0]

        run = jax.jit(bare)
    elif args.variant == "loop":
        @jax.jit
        def step(params, x, key, t):
            key, sub = jax.random.split(key)
            return ddpm_step(eps_fn_of(params), schedule, x, t, sub), key

        def run(params, key, x):
            for t in range(T - 1, -1, -1):
                x, key = step(params, x, key, t)
            return x
    else:  # net
        call = jax.jit(lambda params, x, t: unet.apply(params, x, jnp.full((B,), t, jnp.float32)))

        def run(params, key, x):
            for t in range(T - 1, -1, -1):
                x = call(params, x, t)
            return x

    t0 = time.perf_counter()
    x0 = jax.block_until_ready(run(params, key, x_T))  # compiles (loop / net: runs T steps too)
    out["compile_s"] = time.perf_counter() - t0
    result = [x0]

    def samples(first, n):
        for _ in range(n):
            result[0] = run(params, key, x_T)

    samples(0, args.warmup)
    jax.block_until_ready(result[0])
    out.update(timed(samples, args.samples, args.samples, lambda: jax.block_until_ready(result[0])))
    x0 = np.asarray(result[0])
    out.update(finite=bool(np.isfinite(x0).all()), x0_std=float(np.nanstd(x0)))
    return out


def run_torch(args) -> dict:
    import torch
    from diffusers import DDPMScheduler

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    T, B = args.num_steps, args.batch
    model = torch_unet(args.size, CHANNELS, HEIGHT).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(PARAM_NOISE * torch.randn_like(p))
    beta_start, beta_end = linear_betas(T)
    scheduler = DDPMScheduler(num_train_timesteps=T, beta_start=beta_start, beta_end=beta_end,
                              beta_schedule="linear", variance_type="fixed_small", clip_sample=False,
                              prediction_type="epsilon")
    scheduler.set_timesteps(T)
    assert len(scheduler.timesteps) == T and int(scheduler.timesteps[0]) == T - 1
    x_T = torch.randn(B, CHANNELS, HEIGHT, HEIGHT)  # NCHW
    generator = torch.Generator().manual_seed(3)
    out = {"params": sum(p.numel() for p in model.parameters()), "version": torch.__version__,
           "threads": torch.get_num_threads()}

    @torch.inference_mode()
    def run():
        x = x_T
        for t in scheduler.timesteps:
            eps = model(x, t.float().expand(B))
            x = scheduler.step(eps, t, x, generator=generator).prev_sample
        return x

    t0 = time.perf_counter()
    result = [run()]
    out["compile_s"] = time.perf_counter() - t0  # first sample (nothing to compile)

    def samples(first, n):
        for _ in range(n):
            result[0] = run()

    samples(0, args.warmup)
    out.update(timed(samples, args.samples, args.samples))
    x0 = result[0].numpy()
    out.update(finite=bool(np.isfinite(x0).all()), x0_std=float(np.nanstd(x0)))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=VARIANTS, required=True)
    p.add_argument("--size", choices=tuple(SIZES), required=True)
    p.add_argument("--num-steps", type=int, default=200, help="T: denoising steps per sample")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--samples", type=int, default=3, help="timed samples (each its own block)")
    p.add_argument("--warmup", type=int, default=1, help="untimed samples after the first")
    p.add_argument("--threads", type=int, default=2,
                   help="torch only: intra-op threads (2 as in the train-step scripts; on a loaded "
                        "machine 1 is often faster: spinning OpenMP threads lose their core)")
    args = p.parse_args(argv)
    if min(args.num_steps, args.batch, args.samples, args.threads) < 1 or args.warmup < 0:
        p.error("--num-steps, --batch, --samples and --threads must be positive, --warmup >= 0")
    result = (run_torch if args.variant == "torch" else run_jax)(args)
    if "ms_per_step" in result:  # timed() counts samples: per sample, and per denoising step
        for name in ("ms_per_step", "best_ms_per_step"):
            result[name.replace("step", "sample")] = result[name]
            result[name] = result[name] / args.num_steps
    result.update(variant=args.variant, size=args.size, num_steps=args.num_steps, batch=args.batch,
                  samples=args.samples)
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
