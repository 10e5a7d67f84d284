"""One Glow train-step timing run in this process; prints one JSON line. Spawned by run.py.

    python benchmarks/glow_step.py --framework jax|torch|torch_compile|check
                                   [--size default|small] [--batch 64] [--scan K]

jax: the real `gmzoo train glow` step (issue 12), built as `gmzoo.train.loop.train` builds it:
`zoo.get("glow").default()` + overrides, `loop.setup`, `loop.init_state` (ActNorm's
data-dependent init on the first training batch), `loop.optimizer_and_step` (`make_optimizer`:
clip_by_global_norm 1.0 then Adam 1e-3 on a 200-step linear warm-up + cosine decay to 0 at
train.steps = 3000; `make_train_step` with the EMA 0.999, the skip-if-not-finite guard and the
run's `prepare`, which dequantizes each batch, x' = (x + u) / 256, inside the step); the loss
the recipe's `nll_loss` (mean -log p(x') in nats, the logit transform's log-det included).
Timed as a hand-written loop would run it (`jax.jit(..., donate_argnums=0)` of the step with
key `step_key(state)`, the "jit step" row) and, with `--scan K`, as the loop runs it
(`parallel.compile_steps(scan_steps(step))`, K = `train.steps_per_call` = 1: "as gmzoo train").
torch: the same flow written in torch (`torch_glow`, NCHW indexing, channels_last memory):
the logit transform (alpha 0.05)
and its log-det; per level a squeeze (the same channel order as gmzoo's NHWC squeeze), then
K steps of ActNorm (data-dependent init on the first batch), the LU 1x1 convolution
(W = P L U' rebuilt every call from full [C, C] `lower` / `upper` params masked as gmzoo masks
them, P and sign(s) from the same seeded QR/LU, applied as a 1x1 conv2d) and the channel
affine coupling (the net sees x * b with all C channels: 3x3 conv, ReLU, 1x1 conv, ReLU,
zero-init 3x3 conv to 2C; s = scale_factor * tanh(raw_s), s and t masked by 1 - b); the split
with a learned prior (zero-init 3x3 conv of the kept half) and the per-channel top prior; the
same parameter count, the same loss on the same dequantization (fresh u each step), the same
optimizer chain (global-norm clip 1.0, fused Adam with the same warm-up + cosine rate, EMA
0.999 with gmzoo's warm-up, skip-if-not-finite guard); eager, or `torch.compile` of the
forward + loss.
`--framework check` (not timed, both frameworks in one process): gmzoo's parameters after
`loop.init_state` (ActNorm initialised from data) copied into the torch twin; log p per
example, the loss and the gradient norm compared on one dequantized batch; then 3 steps of
both optimizer chains on the same dequantized batches, parameter and EMA changes compared.
Data: mnist5k train (4,000 28x28 images, 256 levels), cut into fixed batches held in memory as
float32 levels (what the loop's `BatchIterator` yields). One framework per process.

torch's layout is channels_last (`--torch-layout nchw` for NCHW): on this CPU its NCHW
convolution backward took 54 ms a call against 9 ms channels_last (torch.profiler, small size,
2 threads), 2.4 s against 0.5 s a step, so an NCHW twin would flatter gmzoo about 5x.

Measured 2026-12-06, 2 shared cores, `python benchmarks/run.py --only glow_small_mnist5k
--repeats 2 --torch-compile --max-wait 15` then `--only glow_mnist5k --repeats 2 --max-wait 15`
(alternating gmzoo, torch, [torch.compile]; torch channels_last, 2 threads); batch 64, ms/step,
mean of the run (best block). Other jobs used 50-70% of the CPU in every run (uptime load
average 5.5-6.5 on 2 cores), so torch eager's means swing 3-10x between runs (its OpenMP
threads wait on taken cores); the best blocks are the steadier figures.
  small (0.12M params, 20 timed steps/run):
    gmzoo jit step          337 (284), 246 (193)    compile 20 s, 15 s
    gmzoo as gmzoo train    298 (236), 222 (197)    (scan_steps, K = 1)
    torch eager            1098 (311), 3887 (3433)
    torch.compile          3301 (3276), 3020 (1536) compile 37 s, 8 s (inductor cache warm)
    ratio torch eager / gmzoo jit: 8.6 (medians), 1.61 (best blocks); as gmzoo train 9.6 / 1.58;
    torch.compile / gmzoo: 10.9 / 7.95 (torch.compile works here but is slower than eager)
  default (0.60M params, 10 timed steps/run):
    gmzoo jit step         1019 (904), 1291 (1115)  compile 17 s, 17 s
    gmzoo as gmzoo train    965 (933), 1117 (966)   (scan_steps, K = 1)
    torch eager            7286 (4268), 3857 (991)
    ratio torch eager / gmzoo jit: 4.8 (medians), 1.10 (best blocks); as gmzoo train 5.4 / 1.06
    (torch.compile not run at this size: slower than eager at the small one)
`python benchmarks/glow_step.py --framework check --size small`: log p per example max
relative difference 8.1e-7 (mean log p 814.87 nats both), loss -814.8718 both, gradient norm
4988.272 / 4988.273 (2.2e-7 relative); after 3 steps of both optimizer chains the parameter
changes differ by at most 1.2e-7 (largest change 1.5e-5), the EMA changes by 3.0e-8.
`--size default`: log p 6.5e-7 relative (972.848 nats), loss 3.1e-7, gradient norm 7386.554 /
7386.558 (5.7e-7); 3-step parameter changes within 6.0e-8, EMA within 4.5e-8.
An earlier pair with the torch twin in NCHW (load 10-14, others 70-85% of the CPU) gave
ratios 7.9 / 4.7 best-block (small) and 3.8 / 1.8 (default) against torch eager.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

from gan_step import time_gmzoo_step  # shared with the gated PixelCNN row (this folder is on sys.path)
from gated_pixelcnn_step import level_batches  # mnist5k train as float32 levels, numpy only
from vae_step import time_step_calls

# The recipe's defaults (gmzoo.families.flows.family; jax_run checks them against the recipe's
# config), written out so that the torch process never imports jax. "small": half the hidden
# channels and half the steps per level.
SIZES = {
    "default": dict(num_levels=2, steps_per_level=8, hidden=128, num_layers=2),
    "small": dict(num_levels=2, steps_per_level=4, hidden=64, num_layers=2),
}
IMAGE_SHAPE, LEVELS, ALPHA, KERNEL, ACTNORM_EPS = (28, 28, 1), 256, 0.05, 3, 1e-6
LR, WARMUP, TRAIN_STEPS, CLIP, EMA_DECAY = 1e-3, 200, 3000, 1.0, 0.999  # the recipe's optim/train
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8  # optax.adam's defaults
LOG_2PI = math.log(2.0 * math.pi)
LAYOUTS = {"channels_last": "channels_last", "nchw": "contiguous_format"}  # torch.<name>, resolved below


def learning_rate(count: int) -> float:
    """optax.warmup_cosine_decay_schedule(0, LR, WARMUP, TRAIN_STEPS, 0) at update `count`."""
    if count < WARMUP:
        return LR * count / WARMUP
    frac = min(count - WARMUP, TRAIN_STEPS - WARMUP) / (TRAIN_STEPS - WARMUP)
    return 0.5 * LR * (1.0 + math.cos(math.pi * frac))


def lu_init(c: int, seed: int):
    """gmzoo.families.flows.bijectors.lu_init (numpy + scipy: the torch process has no jax)."""
    import scipy.linalg

    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((c, c)))
    q = q * np.sign(np.diag(r))
    p, lower, u = scipy.linalg.lu(q)
    s = np.diag(u)
    return p, lower, np.triu(u, 1), np.sign(s), np.log(np.abs(s))


def param_plan(size: str, channels: int = 1) -> list[int]:
    """Sizes of every parameter tensor of gmzoo's Glow at `size`, sorted."""
    cfg, k2 = SIZES[size], KERNEL * KERNEL
    h, sizes, c = cfg["hidden"], [], channels
    for level in range(cfg["num_levels"]):
        c *= 4
        for _ in range(cfg["steps_per_level"]):
            sizes += [c, c, c * c, c * c, c]  # ActNorm bias, log_scale; 1x1 lower, upper, log_s
            sizes += [k2 * c * h, h] + [h * h, h] * (cfg["num_layers"] - 1) + [k2 * h * 2 * c, 2 * c, c]
        if level < cfg["num_levels"] - 1:
            sizes += [k2 * (c // 2) * c, c]  # split prior conv
            c //= 2
    return sorted(sizes + [c, c])  # top prior


def torch_glow(size: str, channels: int = 1, seed: int = 0):
    """gmzoo's ImageFlow(Glow) (no classes) as a torch module, NCHW: `x' [B, C, H, W]` in
    [0, 1) -> log p(x') `[B]` in nats. Conv init is torch's default (zero where gmzoo's is)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    cfg = SIZES[size]

    class ActNorm(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.bias, self.log_scale = nn.Parameter(torch.zeros(c)), nn.Parameter(torch.zeros(c))
            self.initializing = False

        def forward(self, x):
            if self.initializing:  # bias = -mean, log_scale = -log(std + eps) of this batch
                with torch.no_grad():
                    mean = x.mean((0, 2, 3))
                    std = (x - mean[:, None, None]).square().mean((0, 2, 3)).sqrt()
                    self.bias.copy_(-mean)
                    self.log_scale.copy_(-torch.log(std + ACTNORM_EPS))
            y = (x + self.bias[:, None, None]) * torch.exp(self.log_scale)[:, None, None]
            return y, x.shape[2] * x.shape[3] * self.log_scale.sum()

    class Invertible1x1Conv(nn.Module):
        def __init__(self, c, seed):
            super().__init__()
            p, l0, u0, sign_s, log_s0 = lu_init(c, seed)
            f32 = lambda a: torch.tensor(np.asarray(a, np.float32))  # noqa: E731
            self.lower, self.upper, self.log_s = (nn.Parameter(f32(a)) for a in (l0, u0, log_s0))
            strict = np.tril(np.ones((c, c)), -1)
            for name, a in (("p", p), ("sign_s", sign_s), ("strict", strict), ("eye", np.eye(c))):
                self.register_buffer(name, f32(a))

        def forward(self, x):
            l_mat = self.lower * self.strict + self.eye
            u_mat = self.upper * self.strict.T + torch.diag(self.sign_s * torch.exp(self.log_s))
            w = self.p @ l_mat @ u_mat  # [C, C]
            return F.conv2d(x, w[:, :, None, None]), x.shape[2] * x.shape[3] * self.log_s.sum()

    class AffineCoupling(nn.Module):
        def __init__(self, c, parity):
            super().__init__()
            first = np.arange(c) < c // 2
            b = (first if parity == 0 else ~first).astype(np.float32)
            self.register_buffer("b", torch.tensor(b)[None, :, None, None])
            h, n = cfg["hidden"], cfg["num_layers"]
            self.convs = nn.ModuleList(
                nn.Conv2d(c if k == 0 else h, h, KERNEL if k == 0 else 1, padding=KERNEL // 2 if k == 0 else 0)
                for k in range(n))
            self.out = nn.Conv2d(h, 2 * c, KERNEL, padding=KERNEL // 2)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)
            self.scale_factor = nn.Parameter(torch.ones(c))
            self.c = c

        def forward(self, x):
            h = x * self.b
            for conv in self.convs:
                h = F.relu(conv(h))
            out = self.out(h)
            s = self.scale_factor[:, None, None] * torch.tanh(out[:, :self.c]) * (1 - self.b)
            t = out[:, self.c:] * (1 - self.b)
            return x * torch.exp(s) + t, s.sum((1, 2, 3))

    class Step(nn.Module):
        def __init__(self, c, parity, seed):
            super().__init__()
            self.actnorm, self.invconv = ActNorm(c), Invertible1x1Conv(c, seed)
            self.coupling = AffineCoupling(c, parity)

        def forward(self, x):
            x, a = self.actnorm(x)
            x, b = self.invconv(x)
            x, c = self.coupling(x)
            return x, c + (a + b)

    def squeeze(x):  # [B, C, H, W] -> [B, 4C, H/2, W/2], channel (2 di + dj) C + c as gmzoo's
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4)
        return x.reshape(b, 4 * c, h // 2, w // 2)

    def gaussian(z, mean, log_std):  # gmzoo.losses.likelihoods.gaussian_log_prob, [B]
        lp = -0.5 * LOG_2PI - log_std - 0.5 * ((z - mean) * torch.exp(-log_std)).square()
        return lp.flatten(1).sum(1)

    class Glow(nn.Module):
        def __init__(self):
            super().__init__()
            k_steps, c, levels, priors = cfg["steps_per_level"], channels, [], []
            for level in range(cfg["num_levels"]):
                c *= 4
                levels.append(nn.ModuleList(Step(c, k % 2, seed + level * k_steps + k) for k in range(k_steps)))
                if level < cfg["num_levels"] - 1:
                    priors.append(nn.Conv2d(c // 2, c, 3, padding=1))
                    nn.init.zeros_(priors[-1].weight)
                    nn.init.zeros_(priors[-1].bias)
                    c //= 2
            self.levels, self.split_priors = nn.ModuleList(levels), nn.ModuleList(priors)
            self.top_mean, self.top_log_std = nn.Parameter(torch.zeros(c)), nn.Parameter(torch.zeros(c))

        def forward(self, x):
            p = ALPHA + (1.0 - 2.0 * ALPHA) * x  # logit transform (Real NVP sec. 4.1)
            x = torch.log(p) - torch.log1p(-p)
            log_det = (math.log1p(-2.0 * ALPHA) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
            log_pz = 0.0
            for level, steps in enumerate(self.levels):
                x = squeeze(x)
                for step in steps:
                    x, ld = step(x)
                    log_det = log_det + ld
                if level < len(self.levels) - 1:
                    c = x.shape[1] // 2
                    x, z = x[:, :c], x[:, c:]
                    out = self.split_priors[level](x)
                    log_pz = log_pz + gaussian(z, out[:, :c], out[:, c:])
                else:
                    log_pz = log_pz + gaussian(x, self.top_mean[:, None, None], self.top_log_std[:, None, None])
            return log_pz + log_det

    return Glow()


def data_init(model, x) -> None:
    """ActNorm's data-dependent init in the torch twin: one forward of `x` with every ActNorm
    setting its params from its input (gmzoo: `init` on the first training batch)."""
    import torch

    norms = [m for m in model.modules() if hasattr(m, "initializing")]
    for m in norms:
        m.initializing = True
    with torch.no_grad():
        model(x)
    for m in norms:
        m.initializing = False


def torch_step(model, loss_fn, dequantize: bool = True):
    """`step(x, t) -> loss`: gmzoo's train step in torch (dequantize, loss, backward, clip, the
    guard, fused Adam on the schedule, EMA with warm-up); returns (step, ema)."""
    import torch

    params = list(model.parameters())
    try:  # fused where it exists (the fastest on CPU)
        opt = torch.optim.Adam(params, lr=0.0, betas=(ADAM_B1, ADAM_B2), eps=ADAM_EPS, fused=True)
    except (RuntimeError, TypeError):
        opt = torch.optim.Adam(params, lr=0.0, betas=(ADAM_B1, ADAM_B2), eps=ADAM_EPS, foreach=True)
    ema = [p.detach().clone() for p in params]
    count = 0  # optax's count: updates applied

    def step(x_levels, t):
        nonlocal count
        x = (x_levels + torch.rand_like(x_levels)) * (1.0 / LEVELS) if dequantize else x_levels
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(x)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, CLIP, foreach=True)  # clip_by_global_norm
        if bool(torch.isfinite(loss) & torch.isfinite(grad_norm)):  # gmzoo's guard
            for group in opt.param_groups:
                group["lr"] = learning_rate(count)
            opt.step()
            count += 1
            decay = min(EMA_DECAY, (1.0 + t) / (10.0 + t))  # gmzoo.train.optim.ema_decay_at
            with torch.no_grad():
                torch._foreach_lerp_(ema, params, 1.0 - decay)
        return loss.detach()

    return step, ema


def jax_run(args):
    """`loop.setup` of `gmzoo train glow` at this size and batch, its defaults checked."""
    from gmzoo import config as cfglib
    from gmzoo import zoo

    cfg = SIZES[args.size]
    config = cfglib.override(zoo.get("glow").default(), [
        f"train.batch_size={args.batch}", *(f"model.{k}={v}" for k, v in cfg.items())])
    m, o, d = config.model, config.optim, config.data
    default = zoo.get("glow").default()
    if args.size == "default":
        assert all(getattr(default.model, k) == v for k, v in cfg.items()), f"the recipe's model is {default.model}"
        assert default.train.batch_size == args.batch, f"the recipe's batch is {default.train.batch_size}"
    assert (m.name, m.logit_alpha, m.num_classes) == ("glow", ALPHA, 0)
    assert getattr(m, "dequantization", "uniform") == "uniform"  # the data space's uniform noise
    assert (o.optimizer, o.learning_rate, o.schedule, o.warmup_steps) == ("adam", LR, "cosine", WARMUP)
    assert (o.b1, o.b2, o.grad_clip_norm, o.ema_decay) == (ADAM_B1, ADAM_B2, CLIP, EMA_DECAY)
    assert (d.name, d.dequantize, d.scale, config.train.steps) == ("mnist5k", True, "unit", TRAIN_STEPS)
    assert config.train.compute_dtype == "float32" and config.train.steps_per_call == 1
    run = zoo.setup(config)
    assert run.image_shape == IMAGE_SHAPE and run.space.num_levels == LEVELS
    return run


def run_jax(args, batches: np.ndarray) -> dict:
    import jax

    from gmzoo.nn.tree import param_count
    from gmzoo.train import loop

    run = jax_run(args)
    state = loop.init_state(run)
    _, step = loop.optimizer_and_step(run, with_model_state=False)
    sizes = sorted(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    assert sizes == param_plan(args.size), f"gmzoo's parameter tensors {sizes} differ from the plan"
    labels = np.zeros(batches.shape[:2], np.int32)  # the loop's batches carry labels (unused)
    out = {"params": param_count(state.params), "backend": jax.default_backend(), "version": jax.__version__}
    out.update(time_gmzoo_step(run, state, step, batches, labels, args))
    return out


def run_torch(args, batches: np.ndarray) -> dict:
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    fmt = getattr(torch, LAYOUTS[args.torch_layout])
    model = torch_glow(args.size).to(memory_format=fmt)
    sizes = sorted(p.numel() for p in model.parameters())
    assert sizes == param_plan(args.size), f"torch's parameter tensors {sizes} differ from the plan"
    data = [torch.from_numpy(b).permute(0, 3, 1, 2).contiguous(memory_format=fmt) for b in batches]  # levels
    data_init(model, (data[0] + torch.rand_like(data[0])) / LEVELS)

    def loss_fn(x):
        return -model(x).mean()

    if args.framework == "torch_compile":
        loss_fn = torch.compile(loss_fn)
    step, _ = torch_step(model, loss_fn)
    out = {"params": sum(p.numel() for p in model.parameters()), "version": torch.__version__,
           "threads": torch.get_num_threads(), "torch_layout": args.torch_layout}
    return time_step_calls(step, data, args, out)


def copy_params(model, params: dict) -> None:
    """gmzoo's Glow params (``{"flow": ...}`` of ImageFlow) into the torch twin, HWIO -> OIHW."""
    import torch

    t = lambda a: torch.from_numpy(np.array(a, np.float32))  # noqa: E731 (a writable copy)
    flow = params["flow"]

    def conv(module, tree):
        module.weight.copy_(t(np.asarray(tree["kernel"]).transpose(3, 2, 0, 1)))
        module.bias.copy_(t(tree["bias"]))

    with torch.no_grad():
        for level, steps in enumerate(model.levels):
            tree = flow[f"levels_{level}"]
            for k, step in enumerate(steps):
                an, inv, cp = (tree[f"layers_{3 * k + i}"] for i in range(3))
                step.actnorm.bias.copy_(t(an["bias"]))
                step.actnorm.log_scale.copy_(t(an["log_scale"]))
                for name in ("lower", "upper", "log_s"):
                    getattr(step.invconv, name).copy_(t(inv[name]))
                for j, c in enumerate(step.coupling.convs):
                    conv(c, cp[f"conv_{j}"])
                conv(step.coupling.out, cp["out"])
                step.coupling.scale_factor.copy_(t(cp["scale_factor"]))
        for level, prior in enumerate(model.split_priors):
            conv(prior, flow[f"split_priors_{level}"]["conv"])
        model.top_mean.copy_(t(flow["top_prior"]["mean"]))
        model.top_log_std.copy_(t(flow["top_prior"]["log_std"]))


def check_equivalence(args, batches: np.ndarray) -> dict:
    """Not timed (`--framework check`): see the module docstring. Raises if log p per example
    differs by more than 1e-4 relative, or the loss / gradient norm by more than 1e-4."""
    import jax
    import jax.numpy as jnp
    import optax
    import torch

    from gmzoo.families.flows import bijectors
    from gmzoo.train import loop
    from gmzoo.train.state import step_key
    from gmzoo.train.step import make_train_step

    torch.set_num_threads(2)
    run = jax_run(args)
    state = loop.init_state(run)
    params = jax.device_get(state.params)
    x = run.space.prepare({"image": jnp.asarray(batches[1]), "label": jnp.zeros(args.batch, jnp.int32)},
                          jax.random.key(7))  # a batch ActNorm's init did not see
    log_p_j = np.asarray(run.module.log_prob(state.params, x["image"]))  # [B]
    loss_j, metrics = run.loss_fn(state.params, x, jax.random.key(0))
    grads = jax.grad(lambda p: run.loss_fn(p, x, jax.random.key(0))[0])(state.params)
    grad_norm_j = float(optax.tree.norm(grads))

    fmt = getattr(torch, LAYOUTS[args.torch_layout])
    model = torch_glow(args.size).to(memory_format=fmt)
    for level, steps in enumerate(model.levels):  # the same fixed P and sign(s) as gmzoo's
        for k, step in enumerate(steps):
            seed = level * SIZES[args.size]["steps_per_level"] + k
            p, _, _, sign_s, _ = bijectors.lu_init(step.invconv.p.shape[0], seed)
            assert np.array_equal(step.invconv.p.numpy(), p.astype(np.float32))
            assert np.array_equal(step.invconv.sign_s.numpy(), sign_s.astype(np.float32))
    copy_params(model, params)
    n_jax = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))
    n_torch = sum(p.numel() for p in model.parameters())
    assert n_jax == n_torch, (n_jax, n_torch)

    x_t = torch.from_numpy(np.asarray(x["image"]).transpose(0, 3, 1, 2).copy()).contiguous(memory_format=fmt)
    log_p_t = model(x_t)
    loss_t = -log_p_t.mean()
    loss_t.backward()
    grad_norm_t = float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters())))
    rel = np.abs(log_p_j - log_p_t.detach().numpy()) / np.abs(log_p_j)

    # 3 steps of both optimizer chains on the same dequantized batches (prepare outside).
    tx, _ = loop.optimizer_and_step(run, with_model_state=False)
    jstep = jax.jit(make_train_step(run.loss_fn, tx, ema_decay=EMA_DECAY))
    xs = [run.space.prepare({"image": jnp.asarray(b), "label": jnp.zeros(args.batch, jnp.int32)},
                            jax.random.key(10 + i))["image"] for i, b in enumerate(batches[2:5])]
    s = state
    for xi in xs:
        s, m = jstep(s, {"image": xi, "label": jnp.zeros(args.batch, jnp.int32)}, step_key(s))
    tstep, ema = torch_step(model, lambda xx: -model(xx).mean(), dequantize=False)
    init_t = [p.detach().clone() for p in model.parameters()]
    for i, xi in enumerate(xs):
        tstep(torch.from_numpy(np.asarray(xi).transpose(0, 3, 1, 2).copy()).contiguous(memory_format=fmt), i)
    twin = torch_glow(args.size)
    names = [n for n, _ in twin.named_parameters()]

    def deltas(tree_after, tree_before):  # max |delta| over all params, per framework, aligned
        copy_params(twin, jax.device_get(tree_after))
        after = [p.detach().clone() for p in twin.parameters()]
        copy_params(twin, jax.device_get(tree_before))
        return [a - b for a, b in zip(after, twin.parameters())]

    with torch.no_grad():
        d_param_j = deltas(s.params, state.params)
        d_ema_j = deltas(s.ema_params, state.ema_params)
        d_param_t = [a - b for a, b in zip(model.parameters(), init_t)]
        d_ema_t = [a - b for a, b in zip(ema, init_t)]
        upd = max(float(d.abs().max()) for d in d_param_j)
        upd_diff = max(float((a - b).abs().max()) for a, b in zip(d_param_j, d_param_t))
        ema_diff = max(float((a - b).abs().max()) for a, b in zip(d_ema_j, d_ema_t))
        worst = max(zip(d_param_j, d_param_t, names), key=lambda z: float((z[0] - z[1]).abs().max()))[2]
    result = {
        "check": f"glow ({args.size}: {SIZES[args.size]}) on mnist5k batch {args.batch}, gmzoo's "
                 f"params after init_state (ActNorm from data) in the torch twin ({args.torch_layout})",
        "params": [n_jax, n_torch],
        "log_p_mean": [float(log_p_j.mean()), float(log_p_t.detach().mean())],
        "log_p_max_rel_diff": float(rel.max()),
        "loss": [float(loss_j), float(loss_t.detach())],
        "loss_rel_diff": abs(float(loss_j) - float(loss_t.detach())) / abs(float(loss_j)),
        "grad_norm": [grad_norm_j, grad_norm_t],
        "grad_norm_rel_diff": abs(grad_norm_j - grad_norm_t) / grad_norm_j,
        "bits_per_dim_gmzoo": float(metrics["bits_per_dim"]),
        "3_steps_max_param_change_gmzoo": upd,
        "3_steps_param_change_max_abs_diff": upd_diff, "3_steps_worst_param": worst,
        "3_steps_ema_change_max_abs_diff": ema_diff,
    }
    ok = (result["log_p_max_rel_diff"] < 1e-4 and result["loss_rel_diff"] < 1e-4
          and result["grad_norm_rel_diff"] < 1e-4 and upd_diff < 0.05 * upd)
    result["passed"] = ok
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--framework", choices=("jax", "torch", "torch_compile", "check"), required=True,
                   help="check: not timed; gmzoo's initial params in the torch twin, outputs compared")
    p.add_argument("--size", choices=tuple(SIZES), default="default")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps after the first")
    p.add_argument("--blocks", type=int, default=5, help="timed blocks (best block reported too)")
    p.add_argument("--scan", type=int, default=0, help="jax only: also time the loop's compiled call, K steps/call")
    p.add_argument("--torch-layout", choices=tuple(LAYOUTS), default="channels_last",
                   help="torch's memory format (NCHW: its conv backward runs ~5x slower on this CPU)")
    args = p.parse_args(argv)
    args.blocks = max(1, min(args.blocks, args.steps))
    batches = level_batches(args.batch)
    if args.framework == "check":
        result = check_equivalence(args, batches)
        print(json.dumps(result, indent=1))
        return 0 if result["passed"] else 1
    result = (run_jax if args.framework == "jax" else run_torch)(args, batches)
    result.update(framework=args.framework, size=args.size, batch=args.batch, steps=args.steps)
    print(json.dumps(result))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
