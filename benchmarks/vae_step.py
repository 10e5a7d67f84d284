"""One VAE train-step timing run in this process; prints one JSON line. Spawned by run.py.

    python benchmarks/vae_step.py --framework jax|torch|torch_compile --arch mlp|conv

jax: the real gmzoo code (`MLPVAE`/`ConvVAE`, `elbo_loss`, `make_train_step` with Adam 1e-3 and
EMA 0.999, `jax.jit(..., donate_argnums=0)`, key `step_key(state)`); with `--scan K` the same
process also times `scan_steps` (K steps per compiled call: what `gmzoo train` runs, with
K = `train.steps_per_call`).
torch: the same network, loss (Bernoulli log-lik + closed-form KL, reparameterised), Adam 1e-3,
EMA of the params and skip-if-not-finite guard, eager (or `torch.compile` of the forward+loss).
Data: mnist5k train (4,000 images) binarized at 128, cut into fixed batches held in memory.
One framework per process: torch and XLA thread pools fight over the cores (FACTS).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

HIDDEN = {"mlp": (512, 256), "conv": (32, 64)}  # gmzoo.models.vae.MLPVAE / ConvVAE


def timed(run_block, steps: int, blocks: int, sync=lambda: None) -> dict:
    """Time `steps` steps as `blocks` blocks; `run_block(first, n)` runs steps first..first+n-1.

    Returns the mean ms/step over all steps and the best block's ms/step (the least disturbed
    by other processes on a shared machine).
    """
    sizes = [steps // blocks + (b < steps % blocks) for b in range(blocks)]
    block_ms, first = [], 0
    for n in filter(None, sizes):
        t0 = time.perf_counter()
        run_block(first, n)
        sync()
        block_ms.append(1e3 * (time.perf_counter() - t0) / n)
        first += n
    mean = sum(m * n for m, n in zip(block_ms, filter(None, sizes))) / steps
    return {"ms_per_step": mean, "best_ms_per_step": min(block_ms)}


def time_step_calls(step, data, args, out: dict) -> dict:
    """A reference twin's timing (torch, eager or compiled): the first call `step(data[0], 0)`
    timed alone (`compile_s`: torch.compile compiles there), `args.warmup` untimed calls, then
    `args.steps` timed ones in `args.blocks` blocks, cycling through `data`; `step(batch, t)`
    returns the loss. Adds compile_s, first_loss, ms_per_step, best_ms_per_step, loss to `out`."""
    t0 = time.perf_counter()
    loss = step(data[0], 0)
    out["compile_s"] = time.perf_counter() - t0
    out["first_loss"] = float(loss)
    last = [loss]

    def steps(first, n):
        for i in range(first, first + n):
            last[0] = step(data[(i + 1) % len(data)], i + 1)

    steps(0, args.warmup)
    out.update(timed(lambda first, n: steps(args.warmup + first, n), args.steps, args.blocks))
    out["loss"] = float(last[0])
    return out


def binarized_batches(batch_size: int) -> np.ndarray:
    """`[num_batches, B, 28, 28, 1]` float32 in {0, 1}: mnist5k train binarized at 128 (numpy
    only: the torch process never imports jax)."""
    from gmzoo.data.registry import load

    images = load("mnist5k", "train").images  # uint8 [N, 28, 28, 1]
    n = len(images) // batch_size * batch_size
    x = (images[:n] >= 128).astype(np.float32)
    return x.reshape(n // batch_size, batch_size, *images.shape[1:])


def run_jax(args, batches: np.ndarray) -> dict:
    import functools

    import jax
    import optax

    from gmzoo.losses.vae import elbo_loss
    from gmzoo.models.vae import ConvVAE, MLPVAE
    from gmzoo.train.state import TrainState, step_key
    from gmzoo.train.step import make_train_step, scan_steps

    cls = MLPVAE if args.arch == "mlp" else ConvVAE
    module = cls(image_shape=batches.shape[2:], latent_dim=args.latent, likelihood="bernoulli")
    apply_fn = lambda p, *a, **k: module.apply({"params": p}, *a, **k)  # noqa: E731
    loss_fn = functools.partial(elbo_loss, apply_fn=apply_fn, likelihood="bernoulli")
    tx = optax.adam(1e-3)
    step = make_train_step(loss_fn, tx, ema_decay=0.999)

    def fresh_state():
        key = jax.random.key(0)
        params = module.init(key, batches[0], key)["params"]
        return TrainState.create(params=params, tx=tx, key=jax.random.key(1))

    state = fresh_state()
    num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    out = {"params": num_params, "backend": jax.default_backend(), "version": jax.__version__}

    # 1. One jitted step per Python call (donated state), as a hand-written loop would do.
    device_batches = [{"image": jax.device_put(b)} for b in batches]
    one_step = jax.jit(lambda s, b: step(s, b, step_key(s)), donate_argnums=0)
    t0 = time.perf_counter()
    state, metrics = one_step(state, device_batches[0])
    jax.block_until_ready(state)
    out["compile_s"] = time.perf_counter() - t0

    def steps(first, n):
        nonlocal state, metrics
        for i in range(first, first + n):
            state, metrics = one_step(state, device_batches[i % len(device_batches)])

    steps(0, args.warmup)
    jax.block_until_ready(state)
    out.update(timed(steps, args.steps, args.blocks, lambda: jax.block_until_ready(state)))
    out["loss"] = float(metrics["loss"])

    # 2. scan_steps: K steps per compiled call, what `gmzoo train` compiles (K = steps_per_call).
    if args.scan > 0:
        k = args.scan
        groups = [{"image": jax.device_put(batches[(np.arange(k) + g * k) % len(batches)])}
                  for g in range(max(1, len(batches) // k))]
        run = jax.jit(scan_steps(step), donate_argnums=0)
        state = fresh_state()
        t0 = time.perf_counter()
        state, _ = run(state, groups[0])
        jax.block_until_ready(state)
        out["scan_compile_s"] = time.perf_counter() - t0
        calls = max(1, math.ceil(args.steps / k))

        def scans(first, n):
            nonlocal state
            for c in range(first, first + n):
                state, _ = run(state, groups[c % len(groups)])

        scan = timed(scans, calls, min(args.blocks, calls), lambda: jax.block_until_ready(state))
        out.update({f"scan_{name}": ms / k for name, ms in scan.items()})
    return out


def torch_vae(arch: str, image_shape: tuple[int, int, int], latent: int):
    """The gmzoo VAE (gmzoo/models/vae.py, nn/mlp.py, nn/conv.py) as a torch module, NCHW.

    gmzoo's stride-2 convs ("SAME": pad (0, 1) on even sizes) and its `UpConv` (their adjoint)
    become Conv2d(padding=1) and ConvTranspose2d(padding=1, output_padding=1): the same shapes,
    FLOPs and parameter count, borders aligned differently. Initialisers are torch's defaults:
    the step time does not depend on them.
    """
    import torch
    from torch import nn

    h, w, c = image_shape
    hidden = HIDDEN[arch]
    if arch == "mlp":
        widths = [h * w * c, *hidden]
        encoder = nn.Sequential(nn.Flatten(), *[m for a, b in zip(widths, widths[1:])
                                                 for m in (nn.Linear(a, b), nn.ReLU())])
        dec = [latent, *reversed(hidden)]
        decoder = nn.Sequential(*[m for a, b in zip(dec, dec[1:]) for m in (nn.Linear(a, b), nn.ReLU())],
                                nn.Linear(hidden[0], h * w * c), nn.Unflatten(1, (c, h, w)))
        features = hidden[-1]
    else:
        chans = [c, *hidden]
        encoder = nn.Sequential(*[m for a, b in zip(chans, chans[1:])
                                  for m in (nn.Conv2d(a, b, 3, stride=2, padding=1), nn.ReLU())],
                                nn.Flatten())
        f = 2 ** len(hidden)
        top = hidden[-1]
        dec = [top, *reversed(hidden)]
        decoder = nn.Sequential(
            nn.Linear(latent, (h // f) * (w // f) * top), nn.ReLU(), nn.Unflatten(1, (top, h // f, w // f)),
            *[m for a, b in zip(dec, dec[1:])
              for m in (nn.ConvTranspose2d(a, b, 3, stride=2, padding=1, output_padding=1), nn.ReLU())],
            nn.Conv2d(hidden[0], c, 3, padding=1))
        features = (h // f) * (w // f) * top

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.posterior, self.decoder = encoder, nn.Linear(features, 2 * latent), decoder

        def forward(self, x):
            mean, log_var = self.posterior(self.encoder(x)).chunk(2, dim=-1)  # [B, Z] each
            z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
            return self.decoder(z), mean, log_var

    return VAE()


def torch_adam(model):
    """``(params, ema, opt)``: Adam (fused where it exists, the fastest on CPU) and an EMA copy."""
    import torch

    params = list(model.parameters())
    ema = [p.detach().clone() for p in params]
    try:
        opt = torch.optim.Adam(params, lr=1e-3, fused=True)
    except (RuntimeError, TypeError):
        opt = torch.optim.Adam(params, lr=1e-3, foreach=True)
    return params, ema, opt


def time_torch_steps(batch_loss, params, ema, opt, data, args) -> dict:
    """Times the PyTorch twin of gmzoo's train step: ``batch_loss(x) -> loss``, backward, the
    same finiteness guard, Adam, and the EMA with gmzoo's warm-up; the first step (compile for
    torch.compile) is reported apart."""
    import torch

    def step(x, t):
        opt.zero_grad(set_to_none=True)
        loss = batch_loss(x)
        loss.backward()
        grads = [p.grad for p in params]
        grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        if bool(torch.isfinite(loss) & torch.isfinite(grad_norm)):  # gmzoo's guard
            opt.step()
            decay = min(0.999, (1.0 + t) / (10.0 + t))  # gmzoo.train.optim.ema_decay_at
            with torch.no_grad():
                torch._foreach_lerp_(ema, params, 1.0 - decay)
        return loss.detach()

    out = {"params": sum(p.numel() for p in params), "version": torch.__version__,
           "threads": torch.get_num_threads()}
    t0 = time.perf_counter()
    step(data[0], 0)
    out["compile_s"] = time.perf_counter() - t0  # first step: compile for torch_compile
    losses = []

    def steps(first, n):
        for i in range(first, first + n):
            losses.append(step(data[i % len(data)], i + 1))

    steps(0, args.warmup)
    out.update(timed(lambda first, n: steps(args.warmup + first, n), args.steps, args.blocks))
    out["loss"] = float(losses[-1])
    return out


def run_torch(args, batches: np.ndarray) -> dict:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = torch_vae(args.arch, batches.shape[2:], args.latent)
    params, ema, opt = torch_adam(model)
    data = [torch.from_numpy(b).permute(0, 3, 1, 2).contiguous() for b in batches]  # NCHW

    def loss_fn(x):
        logits, mean, log_var = model(x)
        recon = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (torch.exp(log_var) + mean.square() - 1.0 - log_var).sum(1)
        return -(recon - kl).mean()

    if args.framework == "torch_compile":
        loss_fn = torch.compile(loss_fn)
    return time_torch_steps(loss_fn, params, ema, opt, data, args)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--framework", choices=("jax", "torch", "torch_compile"), required=True)
    p.add_argument("--arch", choices=tuple(HIDDEN), required=True)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--steps", type=int, default=200, help="timed steps")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps after the first")
    p.add_argument("--blocks", type=int, default=5, help="timed blocks (best block reported too)")
    p.add_argument("--scan", type=int, default=0, help="jax only: also time scan_steps, K steps/call")
    args = p.parse_args(argv)
    args.blocks = max(1, min(args.blocks, args.steps))
    batches = binarized_batches(args.batch)
    result = (run_jax if args.framework == "jax" else run_torch)(args, batches)
    result.update(framework=args.framework, arch=args.arch, batch=args.batch, steps=args.steps)
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
