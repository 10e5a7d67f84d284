"""GAN objectives as pure functions of discriminator outputs (and, for penalties, of functions).

Every loss takes the raw discriminator outputs: logits for the minimax / non-saturating losses
(D(x) = sigmoid(logit)), unbounded critic values for WGAN, hinge and least squares. Outputs are
`[B]` or `[B, ...]` (e.g. PatchGAN `[B, h, w, 1]`); a loss is the mean over every element, so
each patch counts as one decision. Each loss returns a float32 scalar and is *minimised* by its
player. Real and fake batches may differ in size.

- minimax (Goodfellow et al. 2014; the seeds' V(D, G)): `minimax_value`, `minimax_d_loss`,
  `minimax_g_loss`; `non_saturating_g_loss` is the generator loss -E log D(G(z)) of the same
  paper (and the seeds' fix for vanishing gradients).
- WGAN (Arjovsky et al. 2017): `wasserstein_d_loss`, `wasserstein_g_loss`, `clip_weights`;
  WGAN-GP (Gulrajani et al. 2017): `gradient_penalty` (with `interpolate` and
  `per_example_grad_norms`).
- hinge (Lim & Ye 2017; Miyato et al. 2018): `hinge_d_loss`, `hinge_g_loss`.
- least squares (Mao et al. 2017, a = 0, b = c = 1): `least_squares_d_loss`,
  `least_squares_g_loss`.
- regularisers: `r1_penalty` (Mescheder et al. 2018), `feature_matching_loss` (Salimans et al.
  2016).

`GAN_LOSSES` is the one table of names -> `(d_loss, g_loss)`; `get(name)` looks one up.

These are building blocks, not `loss_fn(params, ...)` functions: a GAN train step closes over
each player's `apply_fn` and composes them by adding and weighting, e.g. the WGAN-GP critic loss

    critic = lambda x: apply_fn(d_params, x)
    loss = wasserstein_d_loss(critic(real), critic(fake)) \
        + 10.0 * gradient_penalty(critic, real, fake, key)

which `jax.grad` differentiates w.r.t. `d_params` (the penalty's input gradient is taken inside,
so this is a double backward pass).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gmzoo.nn.tree import at_least_f32

LossPair = tuple[Callable[..., jax.Array], Callable[..., jax.Array]]


def _mean(x: jax.Array) -> jax.Array:
    """Mean over every element (batch and any patch axes) -> scalar."""
    return jnp.mean(x)


# ---- minimax / non-saturating (Goodfellow et al. 2014) -------------------------------------

def minimax_value(real_logits: ArrayLike, fake_logits: ArrayLike) -> jax.Array:
    """V(D, G) = E_{x~p_d} log D(x) + E_{z~p_z} log(1 - D(G(z))), D = sigmoid(logit).

    Computed stably: log D = log_sigmoid(l), log(1 - D) = log_sigmoid(-l). D = 1/2 everywhere
    (logits 0) gives -log 4; D* = p_d / (p_d + p_g) gives -log 4 + 2 JSD(p_d || p_g).
    real_logits `[B, ...]`, fake_logits `[B', ...]` -> scalar.
    """
    return (_mean(jax.nn.log_sigmoid(at_least_f32(real_logits)))
            + _mean(jax.nn.log_sigmoid(-at_least_f32(fake_logits))))


def minimax_d_loss(real_logits: ArrayLike, fake_logits: ArrayLike) -> jax.Array:
    """Discriminator loss -V(D, G) = E softplus(-l_real) + E softplus(l_fake) (D maximises V):
    the binary cross-entropy with real labelled 1 and fake labelled 0. -> scalar."""
    return _mean(jax.nn.softplus(-at_least_f32(real_logits))) + _mean(jax.nn.softplus(at_least_f32(fake_logits)))


def minimax_g_loss(fake_logits: ArrayLike) -> jax.Array:
    """Generator loss of the minimax game, E log(1 - D(G(z))) = -E softplus(l_fake) (G minimises
    V; the real term does not depend on G). Saturates when D rejects fakes confidently.
    -> scalar."""
    return -_mean(jax.nn.softplus(at_least_f32(fake_logits)))


def non_saturating_g_loss(fake_logits: ArrayLike) -> jax.Array:
    """Non-saturating generator loss -E log D(G(z)) = E softplus(-l_fake) (Goodfellow et al.
    2014, Sec. 3): same fixed point as the minimax loss, strong gradients early on. -> scalar."""
    return _mean(jax.nn.softplus(-at_least_f32(fake_logits)))


# ---- Wasserstein (Arjovsky et al. 2017; Gulrajani et al. 2017) ------------------------------

def wasserstein_d_loss(real_scores: ArrayLike, fake_scores: ArrayLike) -> jax.Array:
    """Critic loss E f(G(z)) - E f(x): minimising it maximises the Kantorovich-Rubinstein
    estimate E f(x) - E f(G(z)) of W_1(p_d, p_g) over (approximately) 1-Lipschitz f. -> scalar."""
    return _mean(at_least_f32(fake_scores)) - _mean(at_least_f32(real_scores))


def wasserstein_g_loss(fake_scores: ArrayLike) -> jax.Array:
    """Generator loss -E f(G(z)). -> scalar."""
    return -_mean(at_least_f32(fake_scores))


def clip_weights(params: Any, c: float) -> Any:
    """WGAN weight clipping: every leaf of the pytree `params` clipped to [-c, c] (Arjovsky et
    al. 2017, Algorithm 1, c = 0.01), applied to the critic after each of its updates."""
    if not c > 0:
        raise ValueError(f"clip_weights needs a positive clip value c, got {c!r}")
    return jax.tree.map(lambda p: jnp.clip(p, -c, c), params)


def interpolate(real: ArrayLike, fake: ArrayLike, key: jax.Array) -> jax.Array:
    """x_hat = e * real + (1 - e) * fake with one e ~ U(0, 1) per example, `[B, ...]`."""
    real, fake = jnp.asarray(real), jnp.asarray(fake)
    if real.shape != fake.shape or real.ndim < 1:
        raise ValueError(
            "real and fake must be batches [B, ...] of the same shape, got "
            f"{real.shape} and {fake.shape}")
    e = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)  # [B,1,..]
    return e * real + (1.0 - e) * fake


def _safe_norm(sq: jax.Array) -> jax.Array:
    """sqrt(sq) whose gradient is 0 (not NaN) where sq == 0 (e.g. a constant critic); a NaN
    stays a NaN (``sq * 0``), so the step's finiteness guard sees it."""
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), sq * 0.0)


def _input_grads(fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """grad_x sum_b sum(fn(x)[b]), `[B, ...]`: row b is the gradient of example b's (summed)
    output w.r.t. x_b, provided examples do not interact inside `fn` (no batch norm)."""
    out, vjp = jax.vjp(fn, x)
    if out.ndim < 1 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"the critic must return one output per example, [B] or [B, ...] with B = "
            f"{x.shape[0]}, got shape {out.shape} (do not reduce over the batch inside it)")
    (grads,) = vjp(jnp.ones_like(out))
    return grads


def per_example_grad_norms(fn: Callable[[jax.Array], jax.Array], x: ArrayLike) -> jax.Array:
    """||grad_{x_b} fn(x)_b||_2 for each example, `[B]`: the gradient `[B, ...]` is reshaped
    to `[B, -1]` and normed over axis 1, i.e. over every non-batch axis (all pixels and
    channels of one example). For a multi-output critic (PatchGAN `[B, h, w, 1]`) it is the
    gradient of the sum of that example's outputs."""
    grads = _input_grads(fn, jnp.asarray(x))
    flat = at_least_f32(grads).reshape(grads.shape[0], -1)  # [B, D]
    return _safe_norm(jnp.sum(jnp.square(flat), axis=1))


def gradient_penalty(
    critic_fn: Callable[[jax.Array], jax.Array], real: ArrayLike, fake: ArrayLike,
    key: jax.Array, target: float = 1.0, one_sided: bool = False,
) -> jax.Array:
    """WGAN-GP two-sided penalty (Gulrajani et al. 2017, eq. 3, without the weight lambda = 10):

        GP = mean_b (||grad_x critic(x_hat_b)||_2 - target)^2,
        (one_sided: mean_b max(0, ||grad_x critic(x_hat_b)||_2 - target)^2, the paper's
        Appendix variant, which penalises only slopes above the target; in 1-D the two-sided
        penalty keeps a critic's slope from changing sign),
        x_hat_b = e_b real_b + (1 - e_b) fake_b,   e_b ~ U(0, 1) one per example.

    `critic_fn`: `[B, ...] -> [B]` or `[B, ...]` values (no batch norm: the paper's critic has
    none, and it would couple examples). real, fake `[B, ...]` of one shape -> scalar.

    The norm is taken per example over *all* non-batch axes. A common bug, e.g. in
    eriklindernoren/PyTorch-GAN's wgan_gp.py (issue #20) and caogang/wgan-gp (issues #25, #27),
    is `gradients.norm(2, dim=1)` on an NCHW gradient: that norms over the channel axis only,
    so it pushes every pixel's gradient magnitude to 1 (a per-example norm of about sqrt(H W))
    instead of bounding the critic's Lipschitz constant in the image space.
    """
    real, fake = jnp.asarray(real), jnp.asarray(fake)
    x_hat = interpolate(real, fake, key)  # [B, ...]
    norms = per_example_grad_norms(critic_fn, x_hat)  # [B]
    excess = norms - target
    return jnp.mean(jnp.square(jnp.maximum(excess, 0.0) if one_sided else excess))


# ---- hinge (Lim & Ye 2017; Miyato et al. 2018) ----------------------------------------------

def hinge_d_loss(real_scores: ArrayLike, fake_scores: ArrayLike) -> jax.Array:
    """E relu(1 - D(x)) + E relu(1 + D(G(z))). -> scalar."""
    return (_mean(jax.nn.relu(1.0 - at_least_f32(real_scores)))
            + _mean(jax.nn.relu(1.0 + at_least_f32(fake_scores))))


def hinge_g_loss(fake_scores: ArrayLike) -> jax.Array:
    """-E D(G(z)). -> scalar."""
    return -_mean(at_least_f32(fake_scores))


# ---- least squares (Mao et al. 2017, eq. 2 with a = 0, b = 1, c = 1) ------------------------

def least_squares_d_loss(real_scores: ArrayLike, fake_scores: ArrayLike) -> jax.Array:
    """1/2 E (D(x) - 1)^2 + 1/2 E D(G(z))^2 on raw (unsquashed) outputs. -> scalar."""
    return 0.5 * (_mean(jnp.square(at_least_f32(real_scores) - 1.0)) + _mean(jnp.square(at_least_f32(fake_scores))))


def least_squares_g_loss(fake_scores: ArrayLike) -> jax.Array:
    """1/2 E (D(G(z)) - 1)^2. -> scalar."""
    return 0.5 * _mean(jnp.square(at_least_f32(fake_scores) - 1.0))


# ---- regularisers ---------------------------------------------------------------------------

def r1_penalty(disc_fn: Callable[[jax.Array], jax.Array], real: ArrayLike) -> jax.Array:
    """R1 = E_{x~p_d} ||grad_x D(x)||^2 on real data (Mescheder et al. 2018, eq. 9), scalar.

    `disc_fn`: `[B, ...] -> [B]` (or `[B, ...]`, summed per example) logits, the D that enters
    the loss before any sigmoid. The paper's regulariser is (gamma / 2) * R1: the weight is left
    to the caller, as objectives are composed by weighting (e.g. `loss + 5.0 * r1_penalty(...)`
    for gamma = 10). Squared norms over all non-batch axes, then the mean over the batch.
    """
    grads = _input_grads(disc_fn, jnp.asarray(real))
    flat = at_least_f32(grads).reshape(grads.shape[0], -1)  # [B, D]
    return jnp.mean(jnp.sum(jnp.square(flat), axis=1))


def feature_matching_loss(real_features: Any, fake_features: Any) -> jax.Array:
    """|| E_x f(x) - E_z f(G(z)) ||_2^2 (Salimans et al. 2016, Sec. 3.1), scalar.

    Features are one array `[B, ...]` or a pytree of them (e.g. a list of intermediate
    discriminator activations); each leaf is averaged over its batch axis, squared differences
    are summed over its feature axes, and the leaves' terms are summed. Real and fake batch
    sizes may differ; the feature shapes must match. Gradients flow into both arguments: wrap
    `real_features` in `jax.lax.stop_gradient` if that is wanted.
    """
    real_leaves, real_tree = jax.tree.flatten(real_features)
    fake_leaves, fake_tree = jax.tree.flatten(fake_features)
    if real_tree != fake_tree:
        raise ValueError(
            f"real and fake features must have the same structure, got {real_tree} and {fake_tree}")
    if not real_leaves:
        raise ValueError("feature_matching_loss needs at least one feature array")
    total = jnp.zeros((), jnp.float32)
    for i, (r, f) in enumerate(zip(real_leaves, fake_leaves)):
        r, f = at_least_f32(r), at_least_f32(f)
        if r.ndim < 1 or r.shape[1:] != f.shape[1:]:
            raise ValueError(
                f"feature {i}: real and fake must be [B, ...] with the same feature shape, got "
                f"{r.shape} and {f.shape}")
        total = total + jnp.sum(jnp.square(jnp.mean(r, axis=0) - jnp.mean(f, axis=0)))
    return total


# ---- the table of names ----------------------------------------------------------------------

GAN_LOSSES: dict[str, LossPair] = {
    "minimax": (minimax_d_loss, minimax_g_loss),
    "non_saturating": (minimax_d_loss, non_saturating_g_loss),
    "wasserstein": (wasserstein_d_loss, wasserstein_g_loss),
    "hinge": (hinge_d_loss, hinge_g_loss),
    "least_squares": (least_squares_d_loss, least_squares_g_loss),
}


def get(name: str) -> LossPair:
    """`(d_loss(real, fake), g_loss(fake))` for a name in `GAN_LOSSES`. WGAN's Lipschitz
    constraint (`clip_weights` or `gradient_penalty`) is not part of the pair: add it."""
    if name not in GAN_LOSSES:
        raise ValueError(f"unknown gan loss {name!r}; choose one of {', '.join(GAN_LOSSES)}")
    return GAN_LOSSES[name]
