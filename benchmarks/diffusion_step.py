"""One DDPM U-Net train-step timing run in this process; prints one JSON line. Spawned by run.py.

    python benchmarks/diffusion_step.py --framework jax|torch|torch_compile --size small|medium

jax: the real gmzoo code (`SmallUNet`/`MediumUNet` of gmzoo.nn.unet, `simple_loss` of
gmzoo.losses.diffusion with the linear beta schedule at T = 1000 and eps-prediction,
`make_train_step` with Adam 1e-3 and EMA 0.999, `jax.jit(..., donate_argnums=0)`, key
`step_key(state)`); with `--scan K` the same process also times `scan_steps`.
torch: the same U-Net written in torch (`torch_unet`: same layers, widths, skip connections and
parameter count), the same L_simple (t ~ U{0..T-1}, x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,
mean squared error against eps), Adam 1e-3, EMA of the params and the skip-if-not-finite guard,
eager (or `torch.compile` of the forward+loss).
Data: digits train (1,437 8x8 images, 17 levels) scaled to [-1, 1], cut into fixed batches.
One framework per process: torch and XLA thread pools fight over the cores.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from vae_step import time_torch_steps, timed, torch_adam  # same timing helper (this folder is on sys.path when run as a script)

# The fields of gmzoo.nn.unet.SmallUNet / MediumUNet (run_jax checks they agree), written out so
# that the torch process never imports jax.
SIZES = {
    "small": dict(base_channels=16, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(4,),
                  num_heads=1, num_groups=8),
    "medium": dict(base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=2, attention_resolutions=(4, 2),
                   num_heads=1, num_groups=8),
}
NUM_STEPS, BETA_START, BETA_END = 1000, 1e-4, 0.02  # Ho et al. (2020) linear schedule


def digit_batches(batch_size: int) -> np.ndarray:
    """`[num_batches, B, 8, 8, 1]` float32 in [-1, 1]: digits train (levels 0..16), numpy only."""
    from gmzoo.data.registry import load

    images = load("digits", "train").images  # uint8 [N, 8, 8, 1], 0..16
    n = len(images) // batch_size * batch_size
    x = images[:n].astype(np.float32) / 8.0 - 1.0
    return x.reshape(n // batch_size, batch_size, *images.shape[1:])


def run_jax(args, batches: np.ndarray) -> dict:
    import functools

    import jax
    import optax

    from gmzoo.diffusion.schedules import linear
    from gmzoo.losses.diffusion import simple_loss
    from gmzoo.models.diffusion import MediumUNet, SmallUNet
    from gmzoo.nn.tree import param_count
    from gmzoo.train.state import TrainState, step_key
    from gmzoo.train.step import make_train_step, scan_steps

    module = {"small": SmallUNet, "medium": MediumUNet}[args.size]()
    for field, value in SIZES[args.size].items():
        assert getattr(module, field) == value, f"SIZES[{args.size!r}][{field!r}] != {getattr(module, field)}"
    apply_fn = lambda p, x, t, y=None, cond=None: module.apply({"params": p}, x, t, y, cond)  # noqa: E731
    schedule = linear(NUM_STEPS, BETA_START, BETA_END)
    loss_fn = functools.partial(simple_loss, apply_fn=apply_fn, schedule=schedule, prediction="eps")
    tx = optax.adam(1e-3)
    step = make_train_step(loss_fn, tx, ema_decay=0.999)
    t0 = batches[0, :, 0, 0, 0]  # any [B] float array for init
    init = jax.jit(module.init)

    def fresh_state():
        params = init(jax.random.key(0), batches[0], t0)["params"]
        return TrainState.create(params=params, tx=tx, key=jax.random.key(1))

    state = fresh_state()
    out = {"params": param_count(state.params), "backend": jax.default_backend(), "version": jax.__version__}

    # 1. One jitted step per Python call (donated state), as a hand-written loop would do.
    device_batches = [{"image": jax.device_put(b)} for b in batches]
    one_step = jax.jit(lambda s, b: step(s, b, step_key(s)), donate_argnums=0)
    t_start = time.perf_counter()
    state, metrics = one_step(state, device_batches[0])
    jax.block_until_ready(state)
    out["compile_s"] = time.perf_counter() - t_start

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
        t_start = time.perf_counter()
        state, _ = run(state, groups[0])
        jax.block_until_ready(state)
        out["scan_compile_s"] = time.perf_counter() - t_start
        calls = max(1, math.ceil(args.steps / k))

        def scans(first, n):
            nonlocal state
            for c in range(first, first + n):
                state, _ = run(state, groups[c % len(groups)])

        scan = timed(scans, calls, min(args.blocks, calls), lambda: jax.block_until_ready(state))
        out.update({f"scan_{name}": ms / k for name, ms in scan.items()})
    return out


def torch_unet(size: str, channels: int, height: int):
    """gmzoo.nn.unet.UNet as a torch module, NCHW: the same blocks, widths and skips.

    GroupNorm eps 1e-6 (Flax's); stride-2 convs pad (1, 1) where Flax's "SAME" pads (0, 1):
    the same shapes, FLOPs and parameter count. Attention is torch's fused
    `scaled_dot_product_attention`. Zero-initialised layers as in gmzoo; other initialisers are
    torch's defaults (the step time does not depend on them).
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    cfg = SIZES[size]
    base, mults = cfg["base_channels"], cfg["channel_mults"]
    groups, heads = cfg["num_groups"], cfg["num_heads"]
    emb_dim = 4 * base

    def norm(c):
        return nn.GroupNorm(groups, c, eps=1e-6)

    def zero(module):
        nn.init.zeros_(module.weight)
        nn.init.zeros_(module.bias)
        return module

    class ResBlock(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.norm_0, self.conv_0 = norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
            self.emb_proj = nn.Linear(emb_dim, cout)
            self.norm_1, self.conv_1 = norm(cout), zero(nn.Conv2d(cout, cout, 3, padding=1))
            self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

        def forward(self, x, emb):
            h = self.conv_0(F.silu(self.norm_0(x)))
            h = h + self.emb_proj(F.silu(emb))[:, :, None, None]
            return self.skip(x) + self.conv_1(F.silu(self.norm_1(h)))

    class Attention(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.norm, self.qkv, self.proj_out = norm(c), nn.Linear(c, 3 * c), zero(nn.Linear(c, c))

        def forward(self, x):
            b, c, h, w = x.shape
            qkv = self.qkv(self.norm(x).flatten(2).transpose(1, 2))  # [B, N, 3C]
            q, k, v = qkv.view(b, h * w, 3, heads, c // heads).permute(2, 0, 3, 1, 4)  # [B, heads, N, d]
            out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, h * w, c)
            return x + self.proj_out(out).transpose(1, 2).view(b, c, h, w)

    class Upsample(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.Conv2d(c, c, 3, padding=1)

        def forward(self, x):
            return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.time_embed = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
            self.conv_in = nn.Conv2d(channels, base, 3, padding=1)
            self.down, self.up = nn.ModuleList(), nn.ModuleList()  # (kind, module) in call order
            self.down_kinds, self.up_kinds = [], []
            skips, ch, size, last = [base], base, height, len(mults) - 1

            def add(path, kinds, kind, module):
                path.append(module)
                kinds.append(kind)

            for level, mult in enumerate(mults):
                for _ in range(cfg["num_res_blocks"]):
                    add(self.down, self.down_kinds, "res", ResBlock(ch, base * mult))
                    ch = base * mult
                    if size in cfg["attention_resolutions"]:
                        add(self.down, self.down_kinds, "attn", Attention(ch))
                    skips.append(ch)
                if level != last:
                    add(self.down, self.down_kinds, "down", nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                    size //= 2
                    skips.append(ch)
            self.mid_0, self.mid_1 = ResBlock(ch, ch), ResBlock(ch, ch)
            self.mid_attn = Attention(ch) if size in cfg["attention_resolutions"] else nn.Identity()
            for level, mult in reversed(list(enumerate(mults))):
                for _ in range(cfg["num_res_blocks"] + 1):
                    add(self.up, self.up_kinds, "res", ResBlock(ch + skips.pop(), base * mult))
                    ch = base * mult
                    if size in cfg["attention_resolutions"]:
                        add(self.up, self.up_kinds, "attn", Attention(ch))
                if level != 0:
                    add(self.up, self.up_kinds, "up", Upsample(ch))
                    size *= 2
            self.norm_out, self.conv_out = norm(ch), zero(nn.Conv2d(ch, channels, 3, padding=1))

        def forward(self, x, t):
            emb = self.time_embed(sinusoidal(t, base))
            h = self.conv_in(x)
            skips = [h]
            for kind, module in zip(self.down_kinds, self.down):
                h = module(h, emb) if kind == "res" else module(h)
                if kind == "attn":
                    skips[-1] = h  # the skip is the block's output after its attention
                else:
                    skips.append(h)
            h = self.mid_1(self.mid_attn(self.mid_0(h, emb)), emb)
            for kind, module in zip(self.up_kinds, self.up):
                h = module(torch.cat([h, skips.pop()], 1), emb) if kind == "res" else module(h)
            return self.conv_out(F.silu(self.norm_out(h)))

    def sinusoidal(t, dim):  # gmzoo.nn.embeddings.sinusoidal_embedding
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
        args = t[:, None] * freqs[None, :]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)

    return UNet()


def run_torch(args, batches: np.ndarray) -> dict:
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    _, _, height, _, channels = batches.shape
    model = torch_unet(args.size, channels, height)
    params, ema, opt = torch_adam(model)
    data = [torch.from_numpy(b).permute(0, 3, 1, 2).contiguous() for b in batches]  # NCHW
    betas = np.linspace(BETA_START, BETA_END, NUM_STEPS, dtype=np.float64)
    abar = torch.from_numpy(np.cumprod(1.0 - betas).astype(np.float32))  # [T]

    def loss_fn(x0, t, eps):  # L_simple, eps-prediction (Ho et al. 2020, eq. 14)
        a = abar[t][:, None, None, None]
        x_t = a.sqrt() * x0 + (1.0 - a).sqrt() * eps
        return (model(x_t, t.float()) - eps).square().mean()

    if args.framework == "torch_compile":
        loss_fn = torch.compile(loss_fn)

    def batch_loss(x0):
        t = torch.randint(0, NUM_STEPS, (x0.shape[0],))
        return loss_fn(x0, t, torch.randn_like(x0))

    return time_torch_steps(batch_loss, params, ema, opt, data, args)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--framework", choices=("jax", "torch", "torch_compile"), required=True)
    p.add_argument("--size", choices=tuple(SIZES), required=True)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=50, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps after the first")
    p.add_argument("--blocks", type=int, default=5, help="timed blocks (best block reported too)")
    p.add_argument("--scan", type=int, default=0, help="jax only: also time scan_steps, K steps/call")
    args = p.parse_args(argv)
    args.blocks = max(1, min(args.blocks, args.steps))
    batches = digit_batches(args.batch)
    result = (run_jax if args.framework == "jax" else run_torch)(args, batches)
    result.update(framework=args.framework, size=args.size, batch=args.batch, steps=args.steps)
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
