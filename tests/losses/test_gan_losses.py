"""GAN losses against numpy formulas, the optimal-discriminator identity on a 1-D toy, WGAN-GP
and R1 against per-example gradients, and jit hygiene."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm
from scipy.special import ndtri

from gmzoo.losses import gan

RNG = np.random.default_rng(0)
# PatchGAN-shaped outputs; real and fake batches of different sizes.
REAL = RNG.normal(scale=2.0, size=(6, 3, 3, 1)).astype(np.float32)
FAKE = RNG.normal(scale=2.0, size=(5, 3, 3, 1)).astype(np.float32)


def _log_sigmoid(x):
    return -np.log1p(np.exp(-np.asarray(x, np.float64)))


def _log_one_minus_sigmoid(x):  # log(1 - D), written as the formula, not via softplus
    return np.log(1 - 1 / (1 + np.exp(-np.asarray(x, np.float64))))


# (function, args, numpy reference) on REAL / FAKE, float64 references.
FORMULAS = {
    "minimax_value": (gan.minimax_value, (REAL, FAKE),
                      lambda r, f: _log_sigmoid(r).mean() + _log_one_minus_sigmoid(f).mean()),
    "minimax_d_loss": (gan.minimax_d_loss, (REAL, FAKE),
                       lambda r, f: -(_log_sigmoid(r).mean() + _log_sigmoid(-f).mean())),
    "minimax_g_loss": (gan.minimax_g_loss, (FAKE,),
                       lambda f: _log_one_minus_sigmoid(f).mean()),
    "non_saturating_g_loss": (gan.non_saturating_g_loss, (FAKE,),
                              lambda f: -np.log(1 / (1 + np.exp(-f.astype(np.float64)))).mean()),
    "wasserstein_d_loss": (gan.wasserstein_d_loss, (REAL, FAKE),
                           lambda r, f: f.astype(np.float64).mean() - r.astype(np.float64).mean()),
    "wasserstein_g_loss": (gan.wasserstein_g_loss, (FAKE,), lambda f: -f.astype(np.float64).mean()),
    "hinge_d_loss": (gan.hinge_d_loss, (REAL, FAKE),
                     lambda r, f: np.maximum(0, 1 - r.astype(np.float64)).mean()
                     + np.maximum(0, 1 + f.astype(np.float64)).mean()),
    "hinge_g_loss": (gan.hinge_g_loss, (FAKE,), lambda f: -f.astype(np.float64).mean()),
    "least_squares_d_loss": (gan.least_squares_d_loss, (REAL, FAKE),
                             lambda r, f: 0.5 * ((r.astype(np.float64) - 1) ** 2).mean()
                             + 0.5 * (f.astype(np.float64) ** 2).mean()),
    "least_squares_g_loss": (gan.least_squares_g_loss, (FAKE,),
                             lambda f: 0.5 * ((f.astype(np.float64) - 1) ** 2).mean()),
}


@pytest.mark.parametrize("name", FORMULAS)
def test_loss_matches_numpy_formula(name):
    fn, args, reference = FORMULAS[name]
    got = fn(*args)
    assert got.shape == () and got.dtype == jnp.float32
    np.testing.assert_allclose(float(got), reference(*args), rtol=1e-5, atol=1e-6)


def test_logit_losses_are_stable_for_confident_discriminators():
    """log D from logits: sigmoid(-100) underflows to 0 in float32, its log would be -inf."""
    big = jnp.full((4,), 100.0)
    assert float(gan.minimax_d_loss(big, -big)) < 1e-30
    np.testing.assert_allclose(float(gan.non_saturating_g_loss(-big)), 100.0, rtol=1e-6)
    np.testing.assert_allclose(float(gan.minimax_g_loss(big)), -100.0, rtol=1e-6)
    np.testing.assert_allclose(float(gan.minimax_value(-big, big)), -200.0, rtol=1e-6)


def test_low_precision_logits_give_float32_losses():
    out = gan.minimax_d_loss(jnp.asarray(REAL, jnp.bfloat16), jnp.asarray(FAKE, jnp.bfloat16))
    assert out.dtype == jnp.float32


def test_minimax_value_at_half_is_minus_log_4_and_losses_are_its_players():
    zeros = jnp.zeros((7, 2, 2, 1))
    np.testing.assert_allclose(float(gan.minimax_value(zeros, zeros[:3])), -math.log(4), rtol=1e-6)
    value = gan.minimax_value(REAL, FAKE)
    np.testing.assert_allclose(float(gan.minimax_d_loss(REAL, FAKE)), -float(value), rtol=1e-6)
    real_term = _log_sigmoid(REAL).mean()  # the part of V the generator cannot move
    np.testing.assert_allclose(float(gan.minimax_g_loss(FAKE)), float(value) - real_term, rtol=1e-5)


# ---- optimal discriminator on a 1-D toy: p_d = N(0, 1), p_g = N(1, 1) -------------------------

MU_G = 1.0
N_QUANTILES = 100_000
# Midpoint rule in probability space: x_i = F^{-1}((i + 1/2) / N) turns E_p[h(x)] into a mean
# over deterministic points, so V(D) is evaluated by gmzoo's own minimax_value.
_U = (np.arange(N_QUANTILES) + 0.5) / N_QUANTILES
X_DATA = jnp.asarray(ndtri(_U), jnp.float32)
X_GEN = jnp.asarray(ndtri(_U) + MU_G, jnp.float32)


def _optimal_logit(x):
    """logit D*(x) = log p_d(x) - log p_g(x) (D* = p_d / (p_d + p_g))."""
    return norm.logpdf(x, 0.0, 1.0) - norm.logpdf(x, MU_G, 1.0)


def _value(logit_fn):
    return float(gan.minimax_value(logit_fn(X_DATA), logit_fn(X_GEN)))


def _jsd_by_quadrature():
    x = np.linspace(-15.0, 16.0, 200_001)
    p = np.exp(-0.5 * x**2) / np.sqrt(2 * np.pi)
    q = np.exp(-0.5 * (x - MU_G) ** 2) / np.sqrt(2 * np.pi)
    m = 0.5 * (p + q)
    kl = lambda a: np.trapezoid(a * (np.log(a) - np.log(m)), x)
    return 0.5 * kl(p) + 0.5 * kl(q)


def test_optimal_discriminator_attains_minus_log_4_plus_2_jsd():
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    np.testing.assert_allclose(_optimal_logit(x), 0.5 - x, atol=1e-5)  # the closed form
    jsd = _jsd_by_quadrature()
    assert 0.05 < jsd < math.log(2)
    v_star = _value(_optimal_logit)
    print(f"V(D*) = {v_star:.6f}, -log 4 + 2 JSD = {-math.log(4) + 2 * jsd:.6f}")
    assert abs(v_star - (-math.log(4) + 2 * jsd)) < 1e-3


@pytest.mark.parametrize("perturbation", [
    lambda x, l: l + 0.3, lambda x, l: l - 0.3, lambda x, l: 0.7 * l, lambda x, l: 1.3 * l,
    lambda x, l: l + 0.3 * jnp.sin(2.0 * x), lambda x, l: jnp.zeros_like(l),
], ids=["shift+", "shift-", "flatter", "sharper", "wiggle", "half"])
def test_optimal_discriminator_maximises_the_value(perturbation):
    v_star = _value(_optimal_logit)
    v_other = _value(lambda x: perturbation(x, _optimal_logit(x)))
    print(f"V(D*) - V(D') = {v_star - v_other:.5f}")
    assert v_star > v_other + 2e-3


# ---- WGAN-GP ---------------------------------------------------------------------------------

IMG_SHAPE = (4, 5, 5, 2)
IMG_REAL = jnp.asarray(RNG.normal(size=IMG_SHAPE), jnp.float32)
IMG_FAKE = jnp.asarray(RNG.normal(size=IMG_SHAPE), jnp.float32)
W_MIX = jnp.asarray(RNG.normal(size=(50, 8)) / np.sqrt(50) * 1.5, jnp.float32)  # mixes pixels


def _tanh_critic_one(x):  # one example [5, 5, 2] -> scalar
    return jnp.sum(jnp.tanh(x.reshape(-1) @ W_MIX))


def _tanh_critic(x):  # [B, 5, 5, 2] -> [B]
    return jnp.sum(jnp.tanh(x.reshape(x.shape[0], -1) @ W_MIX), axis=1)


def _direct_grads(fn_one, x):
    """Gradient of a scalar critic w.r.t. each example separately, [B, ...]."""
    return np.stack([np.asarray(jax.grad(fn_one)(x[b]), np.float64) for b in range(x.shape[0])])


def test_interpolate_draws_one_point_per_example_on_the_segment():
    x_hat = gan.interpolate(IMG_REAL, IMG_FAKE, jax.random.key(0))
    ratio = np.asarray((x_hat - IMG_FAKE) / (IMG_REAL - IMG_FAKE)).reshape(IMG_SHAPE[0], -1)
    # one e per example: the ratio is constant over each example's pixels
    np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones_like(ratio), atol=1e-4)
    e = ratio[:, 0]
    assert np.all((e >= 0) & (e <= 1)) and np.ptp(e) > 0.05, e


def test_gradient_penalty_matches_per_example_gradients_and_not_wrong_axes():
    key = jax.random.key(1)
    gp = float(gan.gradient_penalty(_tanh_critic, IMG_REAL, IMG_FAKE, key))
    x_hat = gan.interpolate(IMG_REAL, IMG_FAKE, key)
    grads = _direct_grads(_tanh_critic_one, x_hat)  # [4, 5, 5, 2]
    norms = np.linalg.norm(grads.reshape(4, -1), axis=1)
    np.testing.assert_allclose(np.asarray(gan.per_example_grad_norms(_tanh_critic, x_hat)), norms,
                               rtol=1e-5)
    want = np.mean((norms - 1.0) ** 2)
    batch_axis = np.mean((np.linalg.norm(grads, axis=0) - 1.0) ** 2)  # norm over the batch axis
    channel_axis = np.mean((np.linalg.norm(grads, axis=-1) - 1.0) ** 2)  # PyTorch-GAN dim=1 (NCHW)
    print(f"norms {norms}, GP {gp:.5f}, batch-axis {batch_axis:.5f}, "
          f"channel-axis {channel_axis:.5f}")
    np.testing.assert_allclose(gp, want, rtol=1e-5)
    assert abs(gp - batch_axis) > 0.1 * want and abs(gp - channel_axis) > 0.1 * want
    gp_zero = gan.gradient_penalty(_tanh_critic, IMG_REAL, IMG_FAKE, key, target=0.0)
    np.testing.assert_allclose(float(gp_zero), np.mean(norms**2), rtol=1e-5)


def test_gradient_penalty_of_linear_critics():
    w = RNG.normal(size=IMG_SHAPE[1:])
    w = jnp.asarray(w / np.linalg.norm(w), jnp.float32)  # unit Frobenius norm: exactly 1-Lipschitz
    linear = lambda s: (lambda x: s * jnp.sum(x * w, axis=(1, 2, 3)))
    key = jax.random.key(2)
    assert float(gan.gradient_penalty(linear(1.0), IMG_REAL, IMG_FAKE, key)) < 1e-10
    np.testing.assert_allclose(float(gan.gradient_penalty(linear(3.0), IMG_REAL, IMG_FAKE, key)),
                               4.0, rtol=1e-5)
    # Double backward: d/ds (|s| - 1)^2 = 2 (s - 1) at s = 1.5.
    dgp = jax.grad(lambda s: gan.gradient_penalty(linear(s), IMG_REAL, IMG_FAKE, key))(1.5)
    np.testing.assert_allclose(float(dgp), 1.0, rtol=1e-5)
    # A constant critic has zero input gradient: penalty target^2, finite (not NaN) gradient.
    gp_of_scale = lambda s: gan.gradient_penalty(linear(s), IMG_REAL, IMG_FAKE, key)
    gp0, dgp0 = jax.value_and_grad(gp_of_scale)(0.0)
    assert float(gp0) == pytest.approx(1.0) and np.isfinite(float(dgp0))
    # One-sided: slopes below the target cost nothing, above it (|s| - 1)^2 as before.
    one_sided = lambda s: float(gan.gradient_penalty(linear(s), IMG_REAL, IMG_FAKE, key,
                                                     one_sided=True))
    assert one_sided(0.5) == 0.0 and one_sided(-0.5) == 0.0
    np.testing.assert_allclose(one_sided(3.0), 4.0, rtol=1e-5)


def test_gradient_penalty_patch_critic_and_batch_reduced_critic():
    patch = lambda x: jnp.tanh(x[..., :1] * 2.0)  # [B, 5, 5, 1] PatchGAN-style map
    gp = float(gan.gradient_penalty(patch, IMG_REAL, IMG_FAKE, jax.random.key(3)))
    x_hat = gan.interpolate(IMG_REAL, IMG_FAKE, jax.random.key(3))
    grads = _direct_grads(lambda x: jnp.sum(patch(x[None])), x_hat)
    norms = np.linalg.norm(grads.reshape(4, -1), axis=1)
    np.testing.assert_allclose(gp, np.mean((norms - 1) ** 2), rtol=1e-5)
    with pytest.raises(ValueError, match="one output per example"):
        gan.gradient_penalty(lambda x: jnp.mean(_tanh_critic(x)), IMG_REAL, IMG_FAKE,
                             jax.random.key(3))
    with pytest.raises(ValueError, match="same shape"):
        gan.gradient_penalty(_tanh_critic, IMG_REAL, IMG_FAKE[:2], jax.random.key(3))


# ---- R1, feature matching, clipping, the table ------------------------------------------------

def test_r1_penalty_against_per_example_gradients():
    grads = _direct_grads(_tanh_critic_one, IMG_REAL)
    want = np.mean(np.sum(grads.reshape(4, -1) ** 2, axis=1))
    np.testing.assert_allclose(float(gan.r1_penalty(_tanh_critic, IMG_REAL)), want, rtol=1e-5)
    # D(x) = ||x||^2 / 2 has grad x: R1 = mean_b ||x_b||^2.
    quadratic = lambda x: 0.5 * jnp.sum(x**2, axis=(1, 2, 3))
    np.testing.assert_allclose(float(gan.r1_penalty(quadratic, IMG_REAL)),
                               np.mean(np.sum(np.asarray(IMG_REAL).reshape(4, -1) ** 2, axis=1)),
                               rtol=1e-5)


def test_feature_matching_loss():
    f = jnp.asarray(RNG.normal(size=(6, 3, 4)), jnp.float32)
    assert float(gan.feature_matching_loss(f, f)) == 0.0
    assert float(gan.feature_matching_loss(f, f[::-1])) < 1e-10  # batch means, not per example
    real = jnp.array([[1.0, 2.0], [3.0, 4.0]])  # mean [2, 3]
    fake = jnp.array([[0.0, 0.0], [0.0, 2.0], [0.0, 4.0]])  # mean [0, 2]
    assert float(gan.feature_matching_loss(real, fake)) == pytest.approx(5.0)
    real2, fake2 = jnp.array([[1.0], [1.0]]), jnp.array([[4.0], [2.0], [0.0]])  # means 1 vs 2
    assert float(gan.feature_matching_loss([real, real2], [fake, fake2])) == pytest.approx(6.0)
    assert float(gan.feature_matching_loss({"a": real, "b": real2},
                                           {"a": fake, "b": fake2})) == pytest.approx(6.0)
    with pytest.raises(ValueError, match="same structure"):
        gan.feature_matching_loss([real, real2], [fake])
    with pytest.raises(ValueError, match="feature shape"):
        gan.feature_matching_loss(real, fake[:, :1])


def test_clip_weights_clips_every_leaf():
    params = {"dense": {"kernel": jnp.linspace(-2, 2, 12).reshape(3, 4),
                        "bias": jnp.array([0.7, -0.2])},
              "conv": [jnp.full((2, 2), -5.0), jnp.array(0.01)]}
    clipped = gan.clip_weights(params, 0.5)
    assert jax.tree.structure(clipped) == jax.tree.structure(params)
    for before, after in zip(jax.tree.leaves(params), jax.tree.leaves(clipped)):
        np.testing.assert_array_equal(np.asarray(after), np.clip(np.asarray(before), -0.5, 0.5))
    assert max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(clipped)) == 0.5
    with pytest.raises(ValueError, match="positive clip value"):
        gan.clip_weights(params, 0.0)


def test_get_returns_pairs_and_names_the_choices():
    assert gan.get("non_saturating") == (gan.minimax_d_loss, gan.non_saturating_g_loss)
    assert gan.get("hinge") == (gan.hinge_d_loss, gan.hinge_g_loss)
    for name, (d_loss, g_loss) in gan.GAN_LOSSES.items():
        assert d_loss(REAL, FAKE).shape == () and g_loss(FAKE).shape == (), name
    with pytest.raises(ValueError) as e:
        gan.get("wgan")
    assert "gan loss 'wgan'; choose one of" in str(e.value)
    for name in ("minimax", "non_saturating", "wasserstein", "hinge", "least_squares"):
        assert name in str(e.value)


# ---- jit hygiene -----------------------------------------------------------------------------

JIT_CASES = {name: (fn, args) for name, (fn, args, _) in FORMULAS.items()} | {
    "gradient_penalty": (lambda r, f, k: gan.gradient_penalty(_tanh_critic, r, f, k),
                         (IMG_REAL, IMG_FAKE, jax.random.key(4))),
    "r1_penalty": (lambda r: gan.r1_penalty(_tanh_critic, r), (IMG_REAL,)),
    "feature_matching_loss": (gan.feature_matching_loss, ([REAL, FAKE[:, 0]], [FAKE, REAL[:, 0]])),
}


@pytest.mark.parametrize("name", JIT_CASES)
def test_jit_agrees_with_eager(name):
    fn, args = JIT_CASES[name]
    eager, jitted = fn(*args), jax.jit(fn)(*args)
    assert np.isfinite(float(eager))
    np.testing.assert_allclose(float(jitted), float(eager), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("one_sided", [False, True])
def test_gradient_penalty_keeps_a_nan_a_nan(one_sided):
    # Before: the safe norm mapped a NaN squared norm to 0, so GP of a NaN input was finite and
    # the step's finiteness guard never saw it.
    real = jnp.ones((2, 3))
    fake = real.at[0, 0].set(jnp.nan)
    gp = gan.gradient_penalty(lambda x: jnp.sum(x ** 2, axis=1), real, fake, jax.random.key(0),
                              one_sided=one_sided)
    assert jnp.isnan(gp)
    # the zero-norm case keeps its zero gradient (a constant critic)
    g = jax.grad(lambda r: gan.gradient_penalty(lambda x: jnp.zeros(x.shape[0]) + 0 * x.sum(1), r,
                                                 real, jax.random.key(0)))(real)
    assert np.all(np.isfinite(np.asarray(g)))
