"""Where a Glow train step's time goes on XLA:CPU (not a timing against a reference: the
README's Glow row is `glow_step.py` through `run.py`). The jitted `value_and_grad` of the
recipe's loss on one dequantized mnist5k-shaped batch, whole, then with the invertible 1x1
convolutions replaced by the identity (log-det 0), then with the affine couplings replaced by
the identity; and the forward pass alone. Median ms of 10 calls after a compiling one.

    python benchmarks/glow_profile.py [--size small|default] [--batch 64]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from glow_step import SIZES, jax_run  # this folder is on sys.path when run as a script


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()

    from gmzoo.families.flows import bijectors
    from gmzoo.train import loop

    run = jax_run(args)
    params = loop.init_state(run).params
    levels = np.random.default_rng(0).integers(0, 256, (args.batch, 28, 28, 1))
    batch = run.space.prepare({"image": jnp.asarray(levels, jnp.float32),
                               "label": jnp.zeros((args.batch,), jnp.int32)}, jax.random.key(0))
    key = jax.random.key(1)

    def loss(p):
        return run.loss_fn(p, batch, key)[0]

    def bench(name: str, fn) -> None:
        f = jax.jit(lambda p: fn(p))  # a new function each time: traced with the patches
        jax.block_until_ready(f(params))
        times = []
        for _ in range(10):
            t = time.perf_counter()
            jax.block_until_ready(f(params))
            times.append(time.perf_counter() - t)
        print(f"{name:45s} {1e3 * np.median(times):8.1f} ms", flush=True)

    def identity(self, x, cond=None):
        return x, jnp.zeros(x.shape[:1], x.dtype)

    bench("forward (the loss)", loss)
    bench("value_and_grad", jax.value_and_grad(loss))
    for cls in (bijectors.Invertible1x1Conv, bijectors.AffineCoupling):
        saved = cls.forward_and_log_det
        cls.forward_and_log_det = identity
        try:
            bench(f"value_and_grad, {cls.__name__} = identity", jax.value_and_grad(loss))
        finally:
            cls.forward_and_log_det = saved


if __name__ == "__main__":
    main()
