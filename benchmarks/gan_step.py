"""One GAN train-step timing run in this process; prints one JSON line. Spawned by run.py.

    python benchmarks/gan_step.py --framework jax|torch|torch_compile --model dcgan|wgan_gp
                                  --data digits|mnist5k [--k K] [--batch 64] [--scan K]

One step = k discriminator updates, then one generator update and the generator's EMA
(Goodfellow et al. 2014, Algorithm 1; `gmzoo.train.gan_step`).

jax: the real `gmzoo train MODEL --set data.name=DATA --set model.d_steps=K` step, built as
`gmzoo.train.loop.train` builds it: `zoo.get(MODEL).default()` + overrides, `loop.setup`,
`loop.init_state`, `loop.optimizer_and_step` (the recipe's `train_step` hook:
`make_gan_train_step` with one Adam per player, `players_tx`), batches of raw pixel levels
scaled to [-1, 1] by the run's `prepare` inside the step. Timed as a hand-written loop would
run it (`jax.jit(..., donate_argnums=0)` of the step with key `step_key(state)`, the "jit step"
row) and, with `--scan K`, exactly as the loop runs it: `parallel.compile_steps(scan_steps(step))`
on a `[K, B, ...]` stack put with the loop's batch sharding (K = `train.steps_per_call`, 1 by
default: the "as gmzoo train" row).
torch: the same players written in torch (`torch_players`: the same layer types, kernel sizes,
strides, widths, batch norm, LeakyReLU(0.2), tanh output and parameter count), the same losses
(dcgan: BCE-with-logits D loss with reals and fakes as separate train-mode batches, the
non-saturating G loss; wgan_gp: the Wasserstein critic loss + 10 x the per-example gradient
penalty by double backward), Adam per player with the recipe's hyper-parameters, k D updates
against a frozen G (fakes under no_grad, fresh z each), one G update against the updated D (D's
parameters set requires_grad=False meanwhile: no weight gradients for D), the EMA of G's params
with gmzoo's warm-up, and a skip-if-not-finite guard per update; eager (or `torch.compile` of
both players' forwards; the gradient penalty's critic call stays eager: no double backward
through compiled graphs).
Data: the training split's first images, cut into fixed batches held in memory as float32
levels (what the loop's `BatchIterator` yields), scaled to [-1, 1] inside the step in both.
One framework per process: torch and XLA thread pools fight over the cores.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from vae_step import timed  # same timing helper (this folder is on sys.path when run as a script)

# The recipe defaults (gmzoo.recipes.gan; run_jax checks them against the recipe's config), written
# out so that the torch process never imports jax.
DATA = {"digits": ((8, 8, 1), 17), "mnist5k": ((28, 28, 1), 256)}  # image shape, pixel levels
LATENT, FEATURES = 64, 32  # GANConfig.latent_dim, .features
MODELS = {
    # loss, d_steps, gp_weight, batch norm in D, Adam (lr_g, lr_d, b1, b2)
    "dcgan": dict(loss="non_saturating", d_steps=1, gp_weight=0.0, d_batch_norm=True,
                  adam=(2e-4, 2e-4, 0.5, 0.999)),
    "wgan_gp": dict(loss="wasserstein", d_steps=5, gp_weight=10.0, d_batch_norm=False,
                    adam=(2e-4, 2e-4, 0.5, 0.9)),
}
EMA_DECAY = 0.999
LEAKY_SLOPE = 0.2
BN_MOMENTUM = 0.9  # Flax's convention (running = m * running + (1 - m) * batch); torch's 1 - m
BN_EPS = 1e-5  # flax.linen.BatchNorm's default, torch's too


def param_plan(image_shape, latent: int, features: int, d_batch_norm: bool) -> dict[str, list[int]]:
    """Sizes of every parameter tensor of each player (gmzoo.models.gan's DCGAN plan), sorted.

    G: Dense(Z -> H/4 W/4 2F, no bias), BN(2F), UpConv 3x3 (2F -> F) + bias, BN(F),
       UpConv 3x3 (F -> C) + bias;
    D: Conv 4x4/2 (C -> F) + bias, Conv 4x4/2 (F -> 2F) (+ bias without BN), [BN(2F)],
       Dense(H/4 W/4 2F -> 1) + bias.
    """
    h, w, c = image_shape
    f, cells = features, (h // 4) * (w // 4)
    g = [latent * cells * 2 * f, 2 * f, 2 * f, 9 * 2 * f * f, f, f, f, 9 * f * c, c]
    d = [16 * c * f, f, 16 * f * 2 * f, cells * 2 * f, 1]
    d += [2 * f, 2 * f] if d_batch_norm else [2 * f]  # BN scale and bias, or conv_1's bias
    return {"generator": sorted(g), "discriminator": sorted(d)}


def level_batches(data: str, batch_size: int) -> np.ndarray:
    """`[num_batches, B, H, W, C]` float32 raw pixel levels (0..L-1), as the loop's
    BatchIterator yields them (numpy only: the torch process never imports jax)."""
    from gmzoo.data.registry import load

    images = load(data, "train").images  # uint8 [N, H, W, C]
    n = len(images) // batch_size * batch_size
    return images[:n].astype(np.float32).reshape(n // batch_size, batch_size, *images.shape[1:])


def run_jax(args, batches: np.ndarray) -> dict:
    import jax

    from gmzoo import config as cfglib
    from gmzoo import zoo
    from gmzoo.nn.tree import param_count
    from gmzoo.train import loop

    spec = MODELS[args.model]
    config = cfglib.override(zoo.get(args.model).default(), [
        f"data.name={args.data}", f"train.batch_size={args.batch}", f"model.d_steps={args.k}"])
    m, o = config.model, config.optim
    assert (m.latent_dim, m.features, m.loss, m.gp_weight) == (LATENT, FEATURES, spec["loss"], spec["gp_weight"])
    assert m.batch_norm == spec["d_batch_norm"] and not m.spectral_norm and not m.conditional
    assert (o.optimizer, o.learning_rate, m.d_learning_rate, o.b1, o.b2) == ("adam", *spec["adam"])
    assert (o.schedule, o.warmup_steps, o.grad_clip_norm, o.ema_decay) == ("constant", 0, 0.0, EMA_DECAY)
    assert (config.data.scale, config.data.dequantize, config.train.compute_dtype) == ("symmetric", False, "float32")
    assert config.train.steps_per_call == 1
    run = zoo.setup(config)
    assert run.image_shape == DATA[args.data][0] and run.space.num_levels == DATA[args.data][1]
    nets = run.module
    assert nets.generator.bn_momentum == BN_MOMENTUM == nets.discriminator.bn_momentum

    state = loop.init_state(run)
    with_model_state = bool(state.model_state)
    _, step = loop.optimizer_and_step(run, with_model_state=with_model_state)
    plan = param_plan(run.image_shape, LATENT, FEATURES, spec["d_batch_norm"])
    sizes = {p: sorted(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params[p])) for p in plan}
    assert sizes == plan, f"gmzoo's parameter tensors {sizes} differ from the plan {plan}"
    labels = np.zeros(batches.shape[:2], np.int32)  # the loop's batches carry labels (unused)
    z = jax.ShapeDtypeStruct((args.batch, LATENT), np.float32)
    g_vars = {"params": state.params["generator"], **state.model_state.get("generator", {})}
    g_shape = jax.eval_shape(lambda v, z: nets.generator.apply(v, z), g_vars, z).shape
    d_vars = {"params": state.params["discriminator"], **state.model_state.get("discriminator", {})}
    d_shape = jax.eval_shape(lambda v, x: nets.discriminator.apply(v, x), d_vars,
                             jax.ShapeDtypeStruct((args.batch, *run.image_shape), np.float32)).shape
    out = {"params": param_count(state.params), "g_params": param_count(state.params["generator"]),
           "d_params": param_count(state.params["discriminator"]), "g_out_shape": list(g_shape[1:]),
           "d_out_shape": list(d_shape[1:]), "backend": jax.default_backend(), "version": jax.__version__}

    # One jitted step per Python call (donated state), as a hand-written loop would do, and
    # with --scan as `gmzoo train` runs it.
    out.update(time_gmzoo_step(run, state, step, batches, labels, args,
                               losses=("d_loss", "g_loss")))
    return out


def time_gmzoo_step(run, state, step, batches: np.ndarray, labels: np.ndarray, args, *,
                    losses: tuple[str, ...] = ("loss",)) -> dict:
    """ms per step of the train ``step`` (``loop.optimizer_and_step``'s) from ``state``: one
    jitted step per Python call with the state donated, as a hand-written loop would run it
    (``compile_s``, ``first_<name>`` for each metric in ``losses``, :func:`vae_step.timed`'s
    figures over ``args.steps`` x ``args.blocks`` after ``args.warmup``, the last values), and
    with ``args.scan`` > 0 also as `gmzoo train` runs it (:func:`time_loop_calls`). Shared by
    the GAN, gated PixelCNN and Glow rows."""
    import jax

    from gmzoo.train.state import step_key

    out = {}
    device_batches = [{"image": jax.device_put(b), "label": jax.device_put(y)}
                      for b, y in zip(batches, labels)]
    one_step = jax.jit(lambda s, b: step(s, b, step_key(s)), donate_argnums=0)
    t0 = time.perf_counter()
    state, metrics = one_step(state, device_batches[0])
    jax.block_until_ready(state)
    out["compile_s"] = time.perf_counter() - t0
    out.update({f"first_{name}": float(metrics[name]) for name in losses})

    def steps(first, n):
        nonlocal state, metrics
        for i in range(first, first + n):
            state, metrics = one_step(state, device_batches[(i + 1) % len(device_batches)])

    steps(0, args.warmup)
    jax.block_until_ready(state)
    out.update(timed(lambda first, n: steps(args.warmup + first, n), args.steps, args.blocks,
                     lambda: jax.block_until_ready(state)))
    out.update({name: float(metrics[name]) for name in losses})
    assert bool(metrics["finite"]), "non-finite step"
    if args.scan > 0:  # as `gmzoo train` runs it (the loop's compiled call of K steps)
        out.update(time_loop_calls(run, step, batches, labels, args))
    return out


def time_loop_calls(run, step, batches: np.ndarray, labels: np.ndarray, args) -> dict:
    """ms per step as `gmzoo train` runs ``step``: the loop's compiled call (compile_steps of
    scan_steps, the state replicated and donated, the batch stack sharded), K = ``args.scan``
    steps per call, a fresh state from ``loop.init_state(run)``; ``scan_compile_s`` and
    ``scan_*`` timings of :func:`vae_step.timed`. Shared by the GAN and gated PixelCNN rows."""
    import jax

    from gmzoo.train import loop, parallel
    from gmzoo.train.step import scan_steps

    out: dict = {}
    k = args.scan
    sharding = parallel.batch_sharding(run.mesh)
    groups = [parallel.put_batch({"image": batches[idx], "label": labels[idx]}, sharding)
              for idx in ((np.arange(k) + g * k) % len(batches)
                          for g in range(max(1, len(batches) // k)))]
    run_steps = parallel.compile_steps(scan_steps(step), run.mesh)
    state = loop.init_state(run)
    t0 = time.perf_counter()
    state, _ = run_steps(state, groups[0])
    jax.block_until_ready(state)
    out["scan_compile_s"] = time.perf_counter() - t0
    calls = max(1, math.ceil(args.steps / k))

    def scans(first, n):
        nonlocal state
        for c in range(first, first + n):
            state, _ = run_steps(state, groups[(c + 1) % len(groups)])

    scans(0, max(1, args.warmup // k))
    jax.block_until_ready(state)
    scan = timed(scans, calls, min(args.blocks, calls), lambda: jax.block_until_ready(state))
    out.update({f"scan_{name}": ms / k for name, ms in scan.items()})
    return out


def torch_players(image_shape, latent: int, features: int, d_batch_norm: bool):
    """gmzoo's DCGANGenerator / DCGANDiscriminator (gmzoo/models/gan.py) as torch modules, NCHW.

    D's 4x4 stride-2 convs: Flax's "SAME" pads (1, 1) there, torch's padding=1 is the same.
    G's `UpConv` (3x3, the adjoint of a stride-2 "SAME" conv, which pads (0, 1)) becomes
    ConvTranspose2d(3, stride=2, padding=1, output_padding=1): the same shapes, FLOPs and
    parameter count, borders aligned differently. BatchNorm2d with Flax's eps and momentum.
    Flattening is NCHW here and NHWC in Flax: a permutation of the dense layers' weights.
    Initialisers are torch's defaults (the step time does not depend on them).
    """
    from torch import nn

    h, w, c = image_shape
    h0, w0, f = h // 4, w // 4, features
    bn = lambda ch: nn.BatchNorm2d(ch, eps=BN_EPS, momentum=1.0 - BN_MOMENTUM)  # noqa: E731
    up = lambda cin, cout: nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)  # noqa: E731
    generator = nn.Sequential(
        nn.Linear(latent, h0 * w0 * 2 * f, bias=False), nn.Unflatten(1, (2 * f, h0, w0)),
        bn(2 * f), nn.ReLU(inplace=True),
        up(2 * f, f), bn(f), nn.ReLU(inplace=True),
        up(f, c), nn.Tanh())
    discriminator = nn.Sequential(
        nn.Conv2d(c, f, 4, stride=2, padding=1), nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
        nn.Conv2d(f, 2 * f, 4, stride=2, padding=1, bias=not d_batch_norm),
        *([bn(2 * f)] if d_batch_norm else []), nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
        nn.Flatten(), nn.Linear(h0 * w0 * 2 * f, 1), nn.Flatten(0))  # logits [B]
    return generator, discriminator


def run_torch(args, batches: np.ndarray) -> dict:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(2)
    torch.manual_seed(0)
    spec = MODELS[args.model]
    image_shape, levels = DATA[args.data]
    G, D = torch_players(image_shape, LATENT, FEATURES, spec["d_batch_norm"])
    G.train(), D.train()  # batch statistics in both phases, as the recipe
    plan = param_plan(image_shape, LATENT, FEATURES, spec["d_batch_norm"])
    sizes = {"generator": sorted(p.numel() for p in G.parameters()),
             "discriminator": sorted(p.numel() for p in D.parameters())}
    assert sizes == plan, f"torch's parameter tensors {sizes} differ from the plan {plan}"
    g_params, d_params = list(G.parameters()), list(D.parameters())
    lr_g, lr_d, b1, b2 = spec["adam"]

    def adam(params, lr):  # fused where it exists (the fastest on CPU)
        try:
            return torch.optim.Adam(params, lr=lr, betas=(b1, b2), eps=1e-8, fused=True)
        except (RuntimeError, TypeError):
            return torch.optim.Adam(params, lr=lr, betas=(b1, b2), eps=1e-8, foreach=True)

    opt_g, opt_d = adam(g_params, lr_g), adam(d_params, lr_d)
    ema = [p.detach().clone() for p in g_params]
    B, k, gp_weight = args.batch, args.k, spec["gp_weight"]
    wasserstein = spec["loss"] == "wasserstein"
    g_fwd, d_fwd = G, D
    if args.framework == "torch_compile":  # the penalty's critic call stays eager: compiled
        g_fwd, d_fwd = torch.compile(G), torch.compile(D)  # graphs have no double backward
    data = [torch.from_numpy(b).permute(0, 3, 1, 2).contiguous() for b in batches]  # NCHW levels
    ones, zeros = torch.ones(B), torch.zeros(B)
    with torch.no_grad():
        g_shape = tuple(G(torch.zeros(B, LATENT)).shape)
        d_shape = tuple(D(torch.zeros(B, image_shape[2], *image_shape[:2])).shape)
    for module in (G, D):  # the shape probe's batch statistics out of the running averages
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()

    def d_loss_fn(real):
        with torch.no_grad():  # G frozen: no graph, no G gradients
            fake = g_fwd(torch.randn(B, LATENT))
        real_logits, fake_logits = d_fwd(real), d_fwd(fake)  # separate train-mode batches
        if wasserstein:
            loss = fake_logits.mean() - real_logits.mean()
        else:  # minimax D loss: E softplus(-l_real) + E softplus(l_fake)
            loss = (F.binary_cross_entropy_with_logits(real_logits, ones)
                    + F.binary_cross_entropy_with_logits(fake_logits, zeros))
        if gp_weight > 0:  # Gulrajani et al. (2017): per-example norm over all of C, H, W
            e = torch.rand(B, 1, 1, 1)
            x_hat = (e * real + (1.0 - e) * fake).requires_grad_(True)
            (grads,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
            gp = (grads.flatten(1).norm(dim=1) - 1.0).square().mean()
            loss = loss + gp_weight * gp
        return loss

    def g_loss_fn():
        fake_logits = d_fwd(g_fwd(torch.randn(B, LATENT)))
        if wasserstein:
            return -fake_logits.mean()
        return F.binary_cross_entropy_with_logits(fake_logits, ones)  # non-saturating: E softplus(-l)

    def guarded_step(loss, params, opt):
        """gmzoo's guard: the update only if the loss and the gradient norm are finite."""
        grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm([p.grad for p in params])))
        finite = bool(torch.isfinite(loss) & torch.isfinite(grad_norm))
        if finite:
            opt.step()
        return finite

    def step(x_levels, t):
        real = x_levels * (2.0 / (levels - 1)) - 1.0  # the run's prepare: levels -> [-1, 1]
        for _ in range(k):  # k D updates, the same real batch, fresh z each (gan_step)
            opt_d.zero_grad(set_to_none=True)
            d_loss = d_loss_fn(real)
            d_loss.backward()
            guarded_step(d_loss, d_params, opt_d)
        opt_g.zero_grad(set_to_none=True)
        for p in d_params:  # D frozen: gradients flow through D to G, none into D's weights
            p.requires_grad_(False)
        g_loss = g_loss_fn()
        g_loss.backward()
        for p in d_params:
            p.requires_grad_(True)
        if guarded_step(g_loss, g_params, opt_g):
            decay = min(EMA_DECAY, (1.0 + t) / (10.0 + t))  # gmzoo.train.optim.ema_decay_at
            with torch.no_grad():
                torch._foreach_lerp_(ema, g_params, 1.0 - decay)
        return d_loss.detach(), g_loss.detach()

    out = {"params": sum(p.numel() for p in [*g_params, *d_params]),
           "g_params": sum(p.numel() for p in g_params), "d_params": sum(p.numel() for p in d_params),
           "g_out_shape": [g_shape[2], g_shape[3], g_shape[1]], "d_out_shape": list(d_shape[1:]),
           "version": torch.__version__, "threads": torch.get_num_threads()}
    t0 = time.perf_counter()
    losses = step(data[0], 0)
    out["compile_s"] = time.perf_counter() - t0  # first step: compile for torch_compile
    out["first_d_loss"], out["first_g_loss"] = (float(v) for v in losses)

    def steps(first, n):
        nonlocal losses
        for i in range(first, first + n):
            losses = step(data[(i + 1) % len(data)], i + 1)

    steps(0, args.warmup)
    out.update(timed(lambda first, n: steps(args.warmup + first, n), args.steps, args.blocks))
    out["d_loss"], out["g_loss"] = (float(v) for v in losses)
    return out


def check_equivalence(args, batches: np.ndarray) -> dict:
    """Not timed (`--framework check`, both frameworks in one process): gmzoo's initial
    parameters copied into the torch twins; the same reals, z (and GP mixing weights) in both.

    Compares D's train-mode logits on the reals, G's output, both players' losses and the norms
    of each player's gradient. D's convs pad as Flax's (exact); G's ConvTranspose2d aligns its
    borders one pixel off Flax's `UpConv`, so G (and what depends on it) is compared through
    the same ConvTranspose2d weights with padding=0 and the last row and column cropped, which
    is exactly `UpConv`; the timed twin's padding=1 differs in alignment only.
    """
    import jax
    import jax.numpy as jnp
    import torch
    import torch.nn.functional as F

    from gmzoo import config as cfglib
    from gmzoo import zoo
    from gmzoo.losses import gan as gan_losses
    from gmzoo.train import loop

    spec = MODELS[args.model]
    config = cfglib.override(zoo.get(args.model).default(), [f"data.name={args.data}"])
    run = zoo.setup(config)
    nets, state = run.module, loop.init_state(run)
    image_shape, levels = DATA[args.data]
    (h, w, c), f = image_shape, FEATURES
    h0, w0 = h // 4, w // 4
    G, D = torch_players(image_shape, LATENT, FEATURES, spec["d_batch_norm"])
    gp_, dp_ = jax.device_get(state.params["generator"]), jax.device_get(state.params["discriminator"])
    t = lambda a: torch.from_numpy(np.ascontiguousarray(np.asarray(a, np.float32)))  # noqa: E731
    linear_g, linear_d = [m for m in G if isinstance(m, torch.nn.Linear)], [m for m in D if isinstance(m, torch.nn.Linear)]
    ups = [m for m in G if isinstance(m, torch.nn.ConvTranspose2d)]
    convs = [m for m in D if isinstance(m, torch.nn.Conv2d)]
    bns_g = [m for m in G if isinstance(m, torch.nn.BatchNorm2d)]
    bns_d = [m for m in D if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():  # NHWC flattening (Flax) -> NCHW (torch); HWIO kernels -> OIHW
        linear_g[0].weight.copy_(t(gp_["project"]["kernel"].reshape(LATENT, h0, w0, 2 * f)
                                   .transpose(3, 1, 2, 0).reshape(-1, LATENT)))
        for m, name in zip(bns_g, ("bn_project", "bn_0")):
            m.weight.copy_(t(gp_[name]["scale"]))
            m.bias.copy_(t(gp_[name]["bias"]))
        for m, name in zip(ups, ("deconv_0", "deconv_1")):  # UpConv kernel [3, 3, C_out, C_in]
            m.weight.copy_(t(gp_[name]["kernel"].transpose(3, 2, 0, 1)))
            m.bias.copy_(t(gp_[name]["bias"]))
        for m, name in zip(convs, ("conv_0", "conv_1")):
            m.weight.copy_(t(dp_[name]["kernel"].transpose(3, 2, 0, 1)))
            if m.bias is not None:
                m.bias.copy_(t(dp_[name]["bias"]))
        for m in bns_d:
            m.weight.copy_(t(dp_["bn_1"]["scale"]))
            m.bias.copy_(t(dp_["bn_1"]["bias"]))
        linear_d[0].weight.copy_(t(dp_["logit"]["kernel"][:, 0].reshape(h0, w0, 2 * f)
                                   .transpose(2, 0, 1).reshape(1, -1)))
        linear_d[0].bias.copy_(t(dp_["logit"]["bias"]))

    def g_torch(z):  # G with UpConv's alignment (see the docstring)
        x = z
        for m in G:
            if isinstance(m, torch.nn.ConvTranspose2d):
                size = x.shape[2:]
                x = F.conv_transpose2d(x, m.weight, m.bias, stride=2)[:, :, :2 * size[0], :2 * size[1]]
            else:
                x = m(x)
        return x

    B = args.batch
    rng = np.random.default_rng(0)
    z_np = rng.standard_normal((B, LATENT)).astype(np.float32)
    e_np = rng.uniform(size=(B, 1, 1, 1)).astype(np.float32)
    real_np = batches[0] * (2.0 / (levels - 1)) - 1.0  # [B, H, W, C] in [-1, 1]
    d_loss_of, g_loss_of = gan_losses.get(spec["loss"])
    ms = state.model_state

    def apply(module, params, player, x):
        out, _ = module.apply({"params": params, **ms.get(player, {})}, x, train=True, mutable=["batch_stats"])
        return out

    def jax_losses(g, d):
        fake = apply(nets.generator, g, "generator", jnp.asarray(z_np))
        critic = lambda x: apply(nets.discriminator, d, "discriminator", x)  # noqa: E731
        real_logits = critic(jnp.asarray(real_np))
        d_loss = d_loss_of(real_logits, critic(jax.lax.stop_gradient(fake)))
        gp = jnp.zeros(())
        if spec["gp_weight"] > 0:
            x_hat = e_np * real_np + (1.0 - e_np) * jax.lax.stop_gradient(fake)
            gp = jnp.mean(jnp.square(gan_losses.per_example_grad_norms(critic, x_hat) - 1.0))
        return fake, real_logits, d_loss + spec["gp_weight"] * gp, g_loss_of(critic(fake))

    def norm(tree):
        return float(jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree))))

    g0, d0 = state.params["generator"], state.params["discriminator"]
    fake_j, logits_j, d_loss_j, g_loss_j = jax_losses(g0, d0)
    d_grad_j = norm(jax.grad(lambda d: jax_losses(g0, d)[2])(d0))
    g_grad_j = norm(jax.grad(lambda g: jax_losses(g, d0)[3])(g0))

    G.train(), D.train()
    real_t = torch.from_numpy(np.ascontiguousarray(real_np.transpose(0, 3, 1, 2)))
    fake_t = g_torch(torch.from_numpy(z_np))
    logits_t = D(real_t)
    fake_logits_t = D(fake_t.detach())
    if spec["loss"] == "wasserstein":
        d_loss_t = fake_logits_t.mean() - logits_t.mean()
    else:
        d_loss_t = F.softplus(-logits_t).mean() + F.softplus(fake_logits_t).mean()
    if spec["gp_weight"] > 0:
        x_hat = (torch.from_numpy(e_np) * real_t + (1.0 - torch.from_numpy(e_np)) * fake_t.detach()).requires_grad_(True)
        (grads,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
        d_loss_t = d_loss_t + spec["gp_weight"] * (grads.flatten(1).norm(dim=1) - 1.0).square().mean()
    d_grad_t = torch.autograd.grad(d_loss_t, list(D.parameters()), retain_graph=True)
    g_fake_logits = D(fake_t)
    g_loss_t = (-g_fake_logits.mean() if spec["loss"] == "wasserstein" else F.softplus(-g_fake_logits).mean())
    g_grad_t = torch.autograd.grad(g_loss_t, list(G.parameters()))
    tnorm = lambda gs: float(torch.sqrt(sum((g ** 2).sum() for g in gs)))  # noqa: E731
    fake_t_nhwc = fake_t.detach().permute(0, 2, 3, 1).numpy()
    return {
        "check": f"{args.model} on {args.data}, gmzoo's initial params in the torch twins",
        "d_real_logits_max_abs_diff": float(np.max(np.abs(np.asarray(logits_j) - logits_t.detach().numpy()))),
        "g_output_max_abs_diff": float(np.max(np.abs(np.asarray(fake_j) - fake_t_nhwc))),
        "d_loss": [float(d_loss_j), float(d_loss_t)], "g_loss": [float(g_loss_j), float(g_loss_t)],
        "d_grad_norm": [d_grad_j, tnorm(d_grad_t)], "g_grad_norm": [g_grad_j, tnorm(g_grad_t)],
        "two_log_2": 2 * math.log(2.0),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--framework", choices=("jax", "torch", "torch_compile", "check"), required=True,
                   help="check: not timed; gmzoo's initial params in the torch twins, outputs compared")
    p.add_argument("--model", choices=tuple(MODELS), default="dcgan")
    p.add_argument("--data", choices=tuple(DATA), default="digits")
    p.add_argument("--k", type=int, default=None, help="D updates per G update (default: the recipe's)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=50, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps after the first")
    p.add_argument("--blocks", type=int, default=5, help="timed blocks (best block reported too)")
    p.add_argument("--scan", type=int, default=0,
                   help="jax only: also time the loop's compiled call, K steps/call")
    args = p.parse_args(argv)
    args.k = MODELS[args.model]["d_steps"] if args.k is None else args.k
    if args.k < 1:
        p.error("--k must be >= 1")
    args.blocks = max(1, min(args.blocks, args.steps))
    batches = level_batches(args.data, args.batch)
    if args.framework == "check":
        print(json.dumps(check_equivalence(args, batches), indent=1))
        return
    result = (run_jax if args.framework == "jax" else run_torch)(args, batches)
    result.update(framework=args.framework, model=args.model, data=args.data, k=args.k,
                  batch=args.batch, steps=args.steps)
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
