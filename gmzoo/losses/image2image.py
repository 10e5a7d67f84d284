"""Reconstruction terms of the image-to-image GANs, pure functions composed with `losses.gan`.

- pix2pix (Isola et al. 2017, eq. 4): G* = arg min_G max_D L_cGAN(G, D) + lambda L_L1(G),
  L_L1 = E ||y - G(x)||_1: `l1_loss` (lambda = 100 in the paper).
- SRGAN (Ledig et al. 2017, eq. 3-5): perceptual loss = content loss + 1e-3 adversarial loss;
  the content loss is the MSE of images (`mse_loss`) or of feature maps phi (`content_loss`,
  their VGG loss with gmzoo's feature net standing in for VGG).
- CycleGAN (Zhu et al. 2017, eq. 2-3): L_cyc = E_a ||F(G(a)) - a||_1 + E_b ||G(F(b)) - b||_1:
  `cycle_consistency_loss`; with identity mapping loss E_b ||G(b) - b||_1 + E_a ||F(a) - a||_1
  (`identity_loss`, their Sec. 5.2).

Every term is a mean over all elements (batch, pixels, channels): the paper's expectation of a
per-pixel average. Each returns a float32 scalar.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gmzoo.nn.tree import at_least_f32


def _check_same(x: jax.Array, y: jax.Array, name: str) -> None:
    if x.shape != y.shape:
        raise ValueError(f"{name} needs two arrays of one shape, got {x.shape} and {y.shape}")


def l1_loss(output: ArrayLike, target: ArrayLike) -> jax.Array:
    """mean |output - target| (pix2pix's L_L1), scalar."""
    output, target = at_least_f32(output), at_least_f32(target)
    _check_same(output, target, "l1_loss")
    return jnp.mean(jnp.abs(output - target))


def mse_loss(output: ArrayLike, target: ArrayLike) -> jax.Array:
    """mean (output - target)^2 (SRGAN's pixel-wise MSE content loss), scalar."""
    output, target = at_least_f32(output), at_least_f32(target)
    _check_same(output, target, "mse_loss")
    return jnp.mean(jnp.square(output - target))


def content_loss(output_features: Any, target_features: Any) -> jax.Array:
    """Sum over feature maps phi_l of mean (phi_l(G(x)) - phi_l(y))^2 (SRGAN's VGG loss), scalar.

    Features are one array or a pytree of arrays of matching shapes (e.g. the activations of
    several layers); no gradient is stopped (wrap the target's in `jax.lax.stop_gradient`).
    """
    outs, out_tree = jax.tree.flatten(output_features)
    tgts, tgt_tree = jax.tree.flatten(target_features)
    if out_tree != tgt_tree or not outs:
        raise ValueError(f"content_loss needs two feature pytrees of one structure, got "
                         f"{out_tree} and {tgt_tree}")
    return sum((mse_loss(o, t) for o, t in zip(outs, tgts)), jnp.zeros((), jnp.float32))


def cycle_consistency_loss(a: ArrayLike, a_cycled: ArrayLike, b: ArrayLike,
                           b_cycled: ArrayLike) -> jax.Array:
    """mean |F(G(a)) - a| + mean |G(F(b)) - b| (CycleGAN eq. 2), scalar."""
    return l1_loss(a_cycled, a) + l1_loss(b_cycled, b)


def identity_loss(a: ArrayLike, f_of_a: ArrayLike, b: ArrayLike, g_of_b: ArrayLike) -> jax.Array:
    """mean |G(b) - b| + mean |F(a) - a| (CycleGAN's identity mapping loss), scalar; G: A -> B,
    F: B -> A, so a generator fed an image of its own output domain should leave it alone."""
    return l1_loss(g_of_b, b) + l1_loss(f_of_a, a)
