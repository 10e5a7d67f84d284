"""One gated PixelCNN train-step timing run in this process; prints one JSON line. Spawned by run.py.

    python benchmarks/gated_pixelcnn_step.py --framework jax|torch|torch_compile|check
                                             [--size default|small] [--batch 100] [--scan K]

jax: the real `gmzoo train gated_pixelcnn` step (issue 11), built as `gmzoo.train.loop.train`
builds it: `zoo.get("gated_pixelcnn").default()` + overrides, `loop.setup`, `loop.init_state`,
`loop.optimizer_and_step` (`make_optimizer` of the family's `_OPTIM`: clip_by_global_norm 1.0
then Adam 1e-3 on a 100-step linear warm-up + cosine decay to 0 at train.steps = 2000;
`make_train_step` with the EMA 0.999, the skip-if-not-finite guard, and the run's `prepare`,
which binarizes each batch dynamically inside the step), the loss the recipe's `nll_loss`
(-log p(x) in nats per example, Bernoulli conditionals, teacher forcing). Timed as a
hand-written loop would run it (`jax.jit(..., donate_argnums=0)` of the step with key
`step_key(state)`, the "jit step" row) and, with `--scan K`, as the loop runs it:
`parallel.compile_steps(scan_steps(step))` on a `[K, B, ...]` stack put with the loop's batch
sharding (K = `train.steps_per_call`, 1 by default: the "as gmzoo train" row).
torch: the same network written in torch (`torch_gated_pixelcnn`: per layer the vertical
(n // 2 + 1) x n convolution padded above, the link 1x1 (no bias) of the vertical
pre-activation shifted down one row, the horizontal 1 x (n // 2 + 1) convolution padded on the
left with its channel-group mask (type A in layer 0, B after), the tanh x sigmoid gates, the
1x1 type-B output, the residual (from layer 1) and skip sums, the ReLU / 1x1 / ReLU / 1x1 head;
masks multiplied into the kernels on every call as gmzoo does; the same parameter count), the
same loss (sum of binary cross-entropy with logits over the pixels, mean over the batch) on
the same dynamic binarization (x ~ Bernoulli(level / 255), fresh each step), the same
optimizer chain (global-norm clip 1.0, fused Adam with the same warm-up + cosine learning
rate, EMA 0.999 with gmzoo's warm-up, skip-if-not-finite guard); eager (or `torch.compile` of
the forward + loss).
`--framework check` (not timed, both frameworks in one process): gmzoo's initial parameters
copied into the torch twin; logits, loss and gradient norm compared on one binarized batch.
Data: mnist5k train (4,000 28x28 images, 256 levels), cut into fixed batches held in memory as
float32 levels (what the loop's `BatchIterator` yields), binarized inside the step in both.
One framework per process: torch and XLA thread pools fight over the cores.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

from gan_step import time_gmzoo_step  # shared with the GAN rows (this folder is on sys.path)
from vae_step import time_step_calls  # same timing helper (this folder is on sys.path when run as a script)

# The recipe's defaults (gmzoo.families.autoregressive.family; run_jax checks them against the
# recipe's config), written out so that the torch process never imports jax. "small" is the
# same network at half the width and half the depth (a default step takes seconds on 2 cores).
SIZES = {
    "default": dict(features=64, num_layers=8, first_kernel=7, kernel=3),
    "small": dict(features=32, num_layers=4, first_kernel=7, kernel=3),
}
IMAGE_SHAPE, LEVELS = (28, 28, 1), 256  # mnist5k
LR, WARMUP, TRAIN_STEPS, CLIP, EMA_DECAY = 1e-3, 100, 2000, 1.0, 0.999  # family._OPTIM, the recipe's steps
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8  # optax.adam's defaults (OptimConfig b1, b2)


def level_batches(batch_size: int) -> np.ndarray:
    """`[num_batches, B, 28, 28, 1]` float32 raw pixel levels (0..255) of mnist5k train, as the
    loop's BatchIterator yields them (numpy only: the torch process never imports jax)."""
    from gmzoo.data.registry import load

    images = load("mnist5k", "train").images  # uint8 [N, 28, 28, 1]
    n = len(images) // batch_size * batch_size
    return images[:n].astype(np.float32).reshape(n // batch_size, batch_size, *images.shape[1:])


def learning_rate(count: int) -> float:
    """optax.warmup_cosine_decay_schedule(0, LR, WARMUP, TRAIN_STEPS, 0) at update `count`."""
    if count < WARMUP:
        return LR * count / WARMUP
    frac = min(count - WARMUP, TRAIN_STEPS - WARMUP) / (TRAIN_STEPS - WARMUP)
    return 0.5 * LR * (1.0 + math.cos(math.pi * frac))


# --- masks: gmzoo.families.autoregressive.pixelcnn.channel_groups / causal_mask, numpy only ---

def channel_groups(num_features: int, num_channels: int, repeat: int = 1) -> np.ndarray:
    per = num_features // repeat
    return (np.arange(num_features) % per) * num_channels // per


def causal_mask(kernel_shape, centre, mask_type, groups_in, groups_out) -> np.ndarray:
    """`[kh, kw, I, O]`: taps before `centre` in raster order kept, after it dropped; at the
    centre input group g feeds output group c when g < c (A) or g <= c (B)."""
    kh, kw = kernel_shape[:2]
    rows, cols = np.arange(kh)[:, None], np.arange(kw)[None, :]
    before = (rows < centre[0]) | ((rows == centre[0]) & (cols < centre[1]))
    mask = np.broadcast_to(before[:, :, None, None], tuple(kernel_shape)).astype(np.float32).copy()
    if mask_type == "A":
        mask[centre] = groups_in[:, None] < groups_out[None, :]
    else:
        mask[centre] = groups_in[:, None] <= groups_out[None, :]
    return mask


def param_plan(size: str, channels: int = 1, num_params: int = 1) -> list[int]:
    """Sizes of every parameter tensor of GatedPixelCNN (num_classes = 0), sorted."""
    cfg = SIZES[size]
    f, c = cfg["features"], channels
    sizes = []
    for k in range(cfg["num_layers"]):
        n = cfg["first_kernel"] if k == 0 else cfg["kernel"]
        cin = c if k == 0 else f
        sizes += [(n // 2 + 1) * n * cin * 2 * f, 2 * f,  # v_convs[k] kernel, bias
                  (n // 2 + 1) * cin * 2 * f, 2 * f,  # h_convs[k]
                  2 * f * 2 * f,  # links[k] (no bias)
                  f * f, f]  # h_outs[k]
    sizes += [f * f, f, f * c * num_params, c * num_params]  # head
    return sorted(sizes)


def run_jax(args, batches: np.ndarray) -> dict:
    import jax

    from gmzoo.families.autoregressive import pixelcnn
    from gmzoo.nn.tree import param_count
    from gmzoo.train import loop

    run = jax_run(args)
    state = loop.init_state(run)
    _, step = loop.optimizer_and_step(run, with_model_state=False)
    sizes = sorted(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    assert sizes == param_plan(args.size), f"gmzoo's parameter tensors {sizes} differ from the plan"
    assert isinstance(run.module.net, pixelcnn.GatedPixelCNN)
    labels = np.zeros(batches.shape[:2], np.int32)  # the loop's batches carry labels (unused)
    out = {"params": param_count(state.params), "backend": jax.default_backend(), "version": jax.__version__}

    out.update(time_gmzoo_step(run, state, step, batches, labels, args))
    return out


def jax_run(args):
    """`loop.setup` of `gmzoo train gated_pixelcnn` at this size and batch, its defaults checked."""
    from gmzoo import config as cfglib
    from gmzoo import zoo

    cfg = SIZES[args.size]
    config = cfglib.override(zoo.get("gated_pixelcnn").default(), [
        f"train.batch_size={args.batch}", *(f"model.{k}={v}" for k, v in cfg.items())])
    m, o, d = config.model, config.optim, config.data
    default = zoo.get("gated_pixelcnn").default().model
    if args.size == "default":
        assert all(getattr(default, k) == v for k, v in cfg.items()), f"the recipe's model is {default}"
    assert (m.name, m.likelihood, m.num_classes) == ("gated_pixelcnn", "bernoulli", 0)
    assert (o.optimizer, o.learning_rate, o.schedule, o.warmup_steps) == ("adam", LR, "cosine", WARMUP)
    assert (o.b1, o.b2, o.grad_clip_norm, o.ema_decay) == (ADAM_B1, ADAM_B2, CLIP, EMA_DECAY)
    assert (d.name, d.binarize, config.train.steps) == ("mnist5k", "dynamic", TRAIN_STEPS)
    assert config.train.compute_dtype == "float32" and config.train.steps_per_call == 1
    run = zoo.setup(config)
    assert run.image_shape == IMAGE_SHAPE and run.space.num_levels == 2
    return run


def torch_gated_pixelcnn(size: str, channels: int = 1):
    """gmzoo's GatedPixelCNN (num_classes 0, Bernoulli: one logit per pixel) as a torch module,
    NCHW: `x [B, C, H, W]` in {0, 1} -> logits `[B, C, H, W]`. Initialisers are torch's
    defaults (the step time does not depend on them; `check` copies gmzoo's in)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    cfg = SIZES[size]
    f, c, layers = cfg["features"], channels, cfg["num_layers"]

    class Conv(nn.Module):
        """A convolution with explicit padding (left, right, top, bottom) and, unless
        `mask_type` is None, gmzoo's causal channel-group mask multiplied in on every call."""

        def __init__(self, cin, cout, kernel, mask_type=None, centre=None, gated=False, bias=True):
            super().__init__()
            self.weight = nn.Parameter(torch.empty(cout, cin, *kernel))
            self.bias = nn.Parameter(torch.empty(cout)) if bias else None
            bound = 1.0 / math.sqrt(cin * kernel[0] * kernel[1])
            nn.init.uniform_(self.weight, -bound, bound)
            if self.bias is not None:
                nn.init.zeros_(self.bias)
            if mask_type is None:
                self.mask = None
            else:
                centre = centre or (kernel[0] // 2, kernel[1] // 2)
                mask = causal_mask((*kernel, cin, cout), centre, mask_type, channel_groups(cin, c),
                                   channel_groups(cout, c, 2 if gated else 1))
                self.register_buffer("mask", torch.from_numpy(mask.transpose(3, 2, 0, 1).copy()))

        def forward(self, x, pad=None):
            w = self.weight if self.mask is None else self.weight * self.mask
            return F.conv2d(F.pad(x, pad) if pad else x, w, self.bias)

    def gate(pre):  # tanh(a) * sigmoid(b), pre = [a, b] on the channels
        a, b = pre.chunk(2, dim=1)
        return torch.tanh(a) * torch.sigmoid(b)

    class GatedPixelCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.sizes = [cfg["first_kernel"] if k == 0 else cfg["kernel"] for k in range(layers)]
            cins = [c] + [f] * (layers - 1)
            self.v_convs = nn.ModuleList(Conv(ci, 2 * f, (n // 2 + 1, n)) for ci, n in zip(cins, self.sizes))
            self.h_convs = nn.ModuleList(
                Conv(ci, 2 * f, (1, n // 2 + 1), "A" if k == 0 else "B", centre=(0, n // 2), gated=True)
                for k, (ci, n) in enumerate(zip(cins, self.sizes)))
            self.links = nn.ModuleList(Conv(2 * f, 2 * f, (1, 1), bias=False) for _ in self.sizes)
            self.h_outs = nn.ModuleList(Conv(f, f, (1, 1), "B") for _ in self.sizes)
            self.head = nn.ModuleList([Conv(f, f, (1, 1), "B"), Conv(f, c, (1, 1), "B")])

        def forward(self, x):
            v = h = 2.0 * x - 1.0  # scale_input, 2 levels
            skip = 0.0
            for k, n in enumerate(self.sizes):
                p = n // 2
                v_pre = self.v_convs[k](v, (p, p, p, 0))  # rows <= i
                link = F.pad(v_pre, (0, 0, 1, 0))[:, :, :-1]  # shifted down: rows < i
                pre = self.h_convs[k](h, (p, 0, 0, 0)) + self.links[k](link)
                out = self.h_outs[k](gate(pre))
                h = out if k == 0 else h + out
                v = gate(v_pre)
                skip = skip + out
            return self.head[1](F.relu(self.head[0](F.relu(skip))))

    return GatedPixelCNN()


def nll_torch(logits, x):
    """-log p(x) in nats per example, mean over the batch: Bernoulli(sigmoid(logit)) per pixel."""
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]


def run_torch(args, batches: np.ndarray) -> dict:
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = torch_gated_pixelcnn(args.size)
    params = list(model.parameters())
    sizes = sorted(p.numel() for p in params)
    assert sizes == param_plan(args.size), f"torch's parameter tensors {sizes} differ from the plan"
    try:  # fused where it exists (the fastest on CPU)
        opt = torch.optim.Adam(params, lr=0.0, betas=(ADAM_B1, ADAM_B2), eps=ADAM_EPS, fused=True)
    except (RuntimeError, TypeError):
        opt = torch.optim.Adam(params, lr=0.0, betas=(ADAM_B1, ADAM_B2), eps=ADAM_EPS, foreach=True)
    ema = [p.detach().clone() for p in params]
    data = [torch.from_numpy(b).permute(0, 3, 1, 2).contiguous() for b in batches]  # NCHW levels

    def loss_fn(x):
        return nll_torch(model(x), x)

    if args.framework == "torch_compile":
        loss_fn = torch.compile(loss_fn)
    count = 0  # optax's count: updates applied

    def step(x_levels, t):
        nonlocal count
        x = torch.bernoulli(x_levels * (1.0 / (LEVELS - 1)))  # dynamic binarization (the run's prepare)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(x)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, CLIP, foreach=True)  # optax.clip_by_global_norm
        if bool(torch.isfinite(loss) & torch.isfinite(grad_norm)):  # gmzoo's guard
            for group in opt.param_groups:
                group["lr"] = learning_rate(count)
            opt.step()
            count += 1
            decay = min(EMA_DECAY, (1.0 + t) / (10.0 + t))  # gmzoo.train.optim.ema_decay_at
            with torch.no_grad():
                torch._foreach_lerp_(ema, params, 1.0 - decay)
        return loss.detach()

    out = {"params": sum(p.numel() for p in params), "version": torch.__version__,
           "threads": torch.get_num_threads()}
    return time_step_calls(step, data, args, out)


def check_equivalence(args, batches: np.ndarray) -> dict:
    """Not timed (`--framework check`): gmzoo's initial parameters (loop.init_state) copied
    into the torch twin (HWIO -> OIHW); one batch binarized once (the run's own `prepare`),
    fed to both. Compares the logits, the recipe's loss (`run.loss_fn`, i.e. nll_loss) against
    the torch loss, and the global norm of the gradient."""
    import jax
    import jax.numpy as jnp
    import torch

    from gmzoo.train import loop

    torch.set_num_threads(2)
    run = jax_run(args)
    state = loop.init_state(run)
    params = jax.device_get(state.params)
    x = run.space.prepare({"image": jnp.asarray(batches[0]), "label": jnp.zeros(args.batch, jnp.int32)},
                          jax.random.key(7))
    raw = run.module.apply_fn(state.params, x["image"])  # [B, H, W, C, P]
    loss_j, metrics = run.loss_fn(state.params, x, jax.random.key(0))
    grads = jax.grad(lambda p: run.loss_fn(p, x, jax.random.key(0))[0])(state.params)
    grad_norm_j = float(jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads))))

    model = torch_gated_pixelcnn(args.size)
    t = lambda a: torch.from_numpy(np.array(a, np.float32))  # noqa: E731 (a writable copy)
    net = params["params"] if "params" in params else params

    def copy(module, tree):
        module.weight.copy_(t(tree["kernel"].transpose(3, 2, 0, 1)))
        if module.bias is not None:
            module.bias.copy_(t(tree["bias"]))

    with torch.no_grad():
        for name in ("v_convs", "h_convs", "links", "h_outs", "head"):
            for k, module in enumerate(getattr(model, name)):
                copy(module, net[f"{name}_{k}"])
    n_jax = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))
    n_torch = sum(p.numel() for p in model.parameters())
    assert n_jax == n_torch, (n_jax, n_torch)

    x_t = t(np.asarray(x["image"]).transpose(0, 3, 1, 2))
    logits_t = model(x_t)
    loss_t = nll_torch(logits_t, x_t)
    loss_t.backward()
    grad_norm_t = float(torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters())))
    logits_j = np.asarray(raw)[..., 0].transpose(0, 3, 1, 2)  # [B, C, H, W]
    diff = np.abs(logits_j - logits_t.detach().numpy())
    return {
        "check": f"gated_pixelcnn ({args.size}: {SIZES[args.size]}) on mnist5k batch {args.batch}, "
                 "gmzoo's initial params in the torch twin",
        "params": [n_jax, n_torch],
        "logits_max_abs_diff": float(diff.max()), "logits_max_abs": float(np.abs(logits_j).max()),
        "loss": [float(loss_j), float(loss_t.detach())],
        "loss_abs_diff": abs(float(loss_j) - float(loss_t.detach())),
        "grad_norm": [grad_norm_j, grad_norm_t],
        "bits_per_dim_gmzoo": float(metrics["bits_per_dim"]),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--framework", choices=("jax", "torch", "torch_compile", "check"), required=True,
                   help="check: not timed; gmzoo's initial params in the torch twin, outputs compared")
    p.add_argument("--size", choices=tuple(SIZES), default="default")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps after the first")
    p.add_argument("--blocks", type=int, default=5, help="timed blocks (best block reported too)")
    p.add_argument("--scan", type=int, default=0,
                   help="jax only: also time the loop's compiled call, K steps/call")
    args = p.parse_args(argv)
    args.blocks = max(1, min(args.blocks, args.steps))
    batches = level_batches(args.batch)
    if args.framework == "check":
        print(json.dumps(check_equivalence(args, batches), indent=1))
        return
    result = (run_jax if args.framework == "jax" else run_torch)(args, batches)
    result.update(framework=args.framework, size=args.size, batch=args.batch, steps=args.steps)
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
