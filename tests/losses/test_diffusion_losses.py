"""L_simple, the variational bound and the noisy-classifier loss against closed forms."""

import math
import sys
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "diffusion"))
from gaussian_data import MU, SIGMA, exact_eps  # noqa: E402

from gmzoo.diffusion import schedules  # noqa: E402
from gmzoo.losses import diffusion as dl  # noqa: E402
from gmzoo.losses.likelihoods import discretized_gaussian_log_prob  # noqa: E402


def _gaussian_batch(n, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": jnp.asarray(rng.multivariate_normal(MU, SIGMA, size=n), jnp.float32)}


def test_simple_loss_of_the_exact_predictor_equals_its_closed_form():
    """E||eps - E[eps|x_t]||^2 / d = E_t tr(I - sigma_t^2 C_t^{-1}) / d, C_t = alpha^2 Sigma + sigma^2 I."""
    s = schedules.linear(100)
    exact = lambda p, x, t, y, c: exact_eps(x, *schedules.coeffs(s, t.astype(jnp.int32)))
    batch = _gaussian_batch(40000)
    loss, _ = jax.jit(lambda k: dl.simple_loss(None, batch, k, apply_fn=exact, schedule=s))(
        jax.random.key(0))
    want = 0.0
    for t in range(100):
        ab = float(s.alphas_cumprod[t])
        C = ab * SIGMA + (1 - ab) * np.eye(3)
        want += np.trace(np.eye(3) - (1 - ab) * np.linalg.inv(C)) / 3 / 100
    assert abs(float(loss) - want) < 0.03 * want, (float(loss), want)
    worse = lambda p, x, t, y, c: 1.1 * exact(p, x, t, y, c)
    loss_worse, _ = dl.simple_loss(None, batch, jax.random.key(0), apply_fn=worse, schedule=s)
    assert float(loss_worse) > float(loss) * 1.02


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_simple_loss_targets(prediction):
    """A network that returns the exact target (it is handed x0 and eps) has zero loss."""
    s = schedules.cosine(50)
    batch = _gaussian_batch(64)
    key = jax.random.key(3)
    t_key, eps_key, _ = jax.random.split(key, 3)
    t = jax.random.randint(t_key, (64,), 0, 50)
    eps = jax.random.normal(eps_key, (64, 3))
    alpha, sigma = schedules.coeffs(s, t)
    tgt = {"x0": batch["image"], "v": alpha[:, None] * eps - sigma[:, None] * batch["image"]}[prediction]
    loss, _ = dl.simple_loss(None, batch, key, apply_fn=lambda *a: tgt, schedule=s,
                             prediction=prediction)
    assert float(loss) < 1e-10


def test_label_dropout_rate():
    y = jnp.zeros((20000,), jnp.int32)
    dropped = dl.drop_labels(jax.random.key(0), y, 0.2, 10)
    assert abs(float(jnp.mean(dropped == 10)) - 0.2) < 0.01
    assert set(np.unique(dropped)) == {0, 10}


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_discretized_gaussian_normalises(levels):
    grid = jnp.linspace(-1, 1, levels)[:, None, None, None]  # [L, 1, 1, 1]: one image per level
    for mean, log_scale in [(0.3, -3.0), (-0.9, 0.5), (1.5, -6.0)]:
        lp = discretized_gaussian_log_prob(grid, mean, log_scale, num_levels=levels)
        np.testing.assert_allclose(float(jnp.sum(jnp.exp(lp))), 1.0, rtol=1e-4)


def test_discretized_gaussian_middle_bin():
    x = jnp.full((1, 1, 1, 1), 0.5)
    lp = discretized_gaussian_log_prob(x, 0.45, math.log(0.1), num_levels=5)  # bins of width 0.5
    want = norm.cdf((0.75 - 0.45) / 0.1) - norm.cdf((0.25 - 0.45) / 0.1)
    np.testing.assert_allclose(float(lp[0]), math.log(want), rtol=1e-5)


def test_vlb_with_an_oracle_network_is_prior_plus_decoder():
    """A network that predicts the true x0 makes every KL term zero: L = L_T + L_0, with
    L_0 = -sum log(2 Phi(delta / s_0) - 1) (x0 at an interior level, decoder std s_0)."""
    s = schedules.linear(40)
    levels = 9
    rng = np.random.default_rng(0)
    k = rng.integers(1, levels - 1, size=(4, 2, 2, 1))  # interior levels only
    x0 = jnp.asarray(2 * k / (levels - 1) - 1, jnp.float32)
    oracle = lambda p, x, t, y, c: x0
    bound = dl.vlb(None, x0, jax.random.key(0), apply_fn=oracle, schedule=s, prediction="x0",
                   num_levels=levels)
    s0 = math.exp(0.5 * float(s.posterior_log_variance_clipped[0]))
    decoder = -4 * math.log(2 * norm.cdf(1 / (levels - 1) / s0) - 1)
    ab = float(s.alphas_cumprod[-1])
    flat = np.asarray(x0).reshape(4, -1)
    prior = 0.5 * np.sum(ab * flat ** 2 + (1 - ab) - 1 - np.log(1 - ab), axis=1)
    np.testing.assert_allclose(bound, prior + decoder, rtol=1e-4, atol=1e-4)


def test_stratified_vlb_estimate_is_unbiased():
    s = schedules.linear(60)
    x0 = jnp.asarray(np.random.default_rng(1).choice([-1.0, 0.0, 1.0], size=(3, 2, 2, 1)), jnp.float32)
    net = lambda p, x, t, y, c: 0.5 * x  # an imperfect eps network
    kw = dict(apply_fn=net, schedule=s, prediction="eps", num_levels=3)
    full = jax.jit(jax.vmap(lambda k: dl.vlb(None, x0, k, **kw)))
    part = jax.jit(jax.vmap(lambda k: dl.vlb(None, x0, k, num_timesteps=6, **kw)))
    keys = jax.random.split(jax.random.key(0), 2000)
    f, p = np.asarray(full(keys[:400])), np.asarray(part(keys))
    se = np.sqrt(f.var(0) / len(f) + p.var(0) / len(p))  # ~0.8 nats of ~27
    assert np.all(np.abs(f.mean(0) - p.mean(0)) < 4 * se), (f.mean(0), p.mean(0), se)
    # and not a trivial agreement: dropping the stratum weight T/K would be far off
    assert np.all(np.abs(f.mean(0) - (p.mean(0) - 0.9 * (p.mean(0) - dl.prior_term(s, x0)))) > 10 * se)


def test_noisy_classifier_loss_of_a_uniform_classifier_is_log_k():
    batch = {"image": jnp.zeros((8, 2, 2, 1)), "label": jnp.arange(8) % 4}
    loss, m = dl.noisy_classifier_loss(None, batch, jax.random.key(0),
                                       apply_fn=lambda p, x, t: jnp.zeros((8, 4)),
                                       schedule=schedules.linear(10))
    np.testing.assert_allclose(float(loss), math.log(4), rtol=1e-6)
