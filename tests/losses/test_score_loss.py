"""Denoising score matching with the exact score of Gaussian data N(MU, SIGMA).

With s = grad log p_t (the exact marginal score) and x_t = alpha x_0 + sigma z, the residual
r = sigma s + z has E||r||^2 = sum_k alpha^2 lam_k / (alpha^2 lam_k + sigma^2) (lam_k: eigenvalues
of SIGMA), and E[r | x_t] = 0, so a network off by a constant delta in its eps-prediction pays
exactly ||delta||^2 more. The loss is E_t of these, t ~ U(eps, T): a 1-D integral done by
quadrature.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.diffusion.sde import SDES, VPSDE
from gmzoo.losses.score import dsm_loss

MU = np.array([0.6, -0.4, 0.2])
SIGMA = np.array([[0.30, 0.12, -0.05], [0.12, 0.20, 0.02], [-0.05, 0.02, 0.15]])  # correlated
BATCH, KEYS = 1000, 200  # 200 000 examples in 200 independent batches


LAM, U = np.linalg.eigh(SIGMA)


def exact_eps(x_t, alpha, sigma):
    """E[z | x_t] = -sigma grad log p_t(x_t) = sigma C_t^{-1} (x_t - alpha MU) with
    C_t = alpha^2 SIGMA + sigma^2 I = U diag(alpha^2 LAM + sigma^2) U^T; x_t [B, 3], alpha and
    sigma [B]."""
    var = alpha[:, None] ** 2 * LAM + sigma[:, None] ** 2  # [B, 3]
    return sigma[:, None] * ((((x_t - alpha[:, None] * MU) @ U) / var) @ U.T)


def exact_apply(sde, prediction="eps"):
    """The Bayes-optimal network for N(MU, SIGMA) plus params["shift"] on its eps-prediction."""

    def apply_fn(params, x_t, c, y):
        alpha, sigma = sde.marginal_coeffs(c / 999.0)  # c = 999 t
        eps = exact_eps(x_t, alpha, sigma) + params["shift"]
        a, s = alpha[:, None], sigma[:, None]
        x0 = (x_t - s * eps) / a
        return {"eps": eps, "x0": x0, "v": a * eps - s * x0, "score": -eps / s}[prediction]

    return apply_fn


@functools.lru_cache(maxsize=None)
def _batched_loss_fn(sde, prediction="eps", likelihood_weighting=False, eps=1e-5):
    """jit(shift -> dsm_loss on KEYS batches of BATCH draws x_0 ~ N(MU, SIGMA), `[KEYS]`)."""
    chol = np.linalg.cholesky(SIGMA)

    def one(key, shift):
        key_x, key_loss = jax.random.split(key)
        x0 = MU + jax.random.normal(key_x, (BATCH, 3)) @ chol.T
        return dsm_loss({"shift": shift}, {"image": x0}, key_loss,
                        apply_fn=exact_apply(sde, prediction), sde=sde, prediction=prediction,
                        likelihood_weighting=likelihood_weighting, eps=eps)[0]

    keys = jax.random.split(jax.random.key(0), KEYS)
    return jax.jit(lambda shift: jax.vmap(one, in_axes=(0, None))(keys, shift))


def _batch_losses(sde, shift, **kwargs):
    return np.asarray(_batched_loss_fn(sde, **kwargs)(shift), np.float64)


def closed_form(sde, eps, likelihood_weighting):
    """(1 / (T - eps)) int_eps^T w(t) sum_k alpha^2 lam_k / (alpha^2 lam_k + sigma^2) dt with
    w = 1 or g^2 / sigma^2 (trapezoid on a log-spaced grid: the integrand varies near eps)."""
    lam = np.linalg.eigvalsh(SIGMA)
    t = np.geomspace(eps, sde.T, 200_001)
    alpha, sigma = [np.asarray(v, np.float64) for v in sde.marginal_coeffs(jnp.asarray(t))]
    a2l = alpha[:, None] ** 2 * lam
    f = np.sum(a2l / (a2l + sigma[:, None] ** 2), axis=1)
    if likelihood_weighting:
        g = np.asarray(sde.sde(jnp.zeros((len(t), 1)), jnp.asarray(t))[1], np.float64)
        f = f * g**2 / sigma**2
    return np.trapezoid(f, t) / (sde.T - eps)


@pytest.mark.parametrize("likelihood_weighting,eps", [(False, 1e-5), (True, 0.05)],
                         ids=["sigma2_weighting", "likelihood_weighting"])
@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_exact_score_loss_matches_closed_form(name, likelihood_weighting, eps):
    """Within 4 standard errors (over 200 batches; eps = 0.05 with likelihood weighting, where
    g^2 / sigma^2 ~ 1 / t would make the VP estimate's variance blow up)."""
    sde = SDES[name]()
    losses = _batch_losses(sde, jnp.zeros(3), likelihood_weighting=likelihood_weighting, eps=eps)
    se = losses.std() / math.sqrt(KEYS)
    want = closed_form(sde, eps, likelihood_weighting)
    assert abs(losses.mean() - want) < 4 * se, (losses.mean(), want, se)
    assert se < 0.01 * want  # the check is sharp: 4 se is under 4% of the value (observed <= 3%)


def test_a_shifted_network_pays_its_squared_shift():
    """loss(shift) - loss(0) = ||shift||^2 in expectation (same keys: only the cross term
    -2 E[r . shift] = 0 is noise), and the exact score has the lowest loss."""
    sde, shift = VPSDE(), jnp.array([0.1, -0.2, 0.05])
    diff = _batch_losses(sde, shift) - _batch_losses(sde, jnp.zeros(3))
    se = diff.std() / math.sqrt(KEYS)
    np.testing.assert_allclose(diff.mean(), float(jnp.sum(shift**2)), atol=4 * se)
    assert np.all(diff > 0)


@pytest.mark.parametrize("likelihood_weighting", [False, True])
def test_every_parameterisation_gives_the_same_loss(likelihood_weighting):
    sde = SDES["subvp"]()
    x0 = jnp.asarray(MU + 0.3 * np.random.default_rng(0).normal(size=(64, 3)), jnp.float32)

    @jax.jit
    def losses(key):
        return jnp.stack([dsm_loss({"shift": jnp.full(3, 0.1)}, {"image": x0}, key,
                                   apply_fn=exact_apply(sde, p), sde=sde, prediction=p,
                                   likelihood_weighting=likelihood_weighting, eps=0.01)[0]
                          for p in ("eps", "x0", "v", "score")])

    out = losses(jax.random.key(1))
    np.testing.assert_allclose(out, out[0], rtol=2e-4)


def test_gradient_of_the_loss_is_twice_the_shift():
    """d/d shift E||r - shift||^2 = 2 shift (E r = 0): value_and_grad works on the loss as is."""
    sde, shift = VPSDE(), jnp.array([0.3, -0.1, 0.2])
    noise = np.random.default_rng(1).normal(size=(20_000, 3))
    x0 = jnp.asarray(MU + noise @ np.linalg.cholesky(SIGMA).T, jnp.float32)
    loss_fn = lambda p: dsm_loss(p, {"image": x0}, jax.random.key(2), apply_fn=exact_apply(sde),
                                 sde=sde)
    (loss, metrics), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))({"shift": shift})
    np.testing.assert_allclose(grads["shift"], 2 * shift, atol=0.03)  # 4 se of 2 E r: ~0.03
    assert metrics["dsm"] == loss


def test_network_inputs_reduction_and_validation():
    sde, seen = VPSDE(), {}

    def apply_fn(params, x_t, c, y):
        seen.update(c=c, y=y, shape=x_t.shape)
        return jnp.zeros_like(x_t)

    batch = {"image": jnp.ones((500, 2, 2, 1)), "label": jnp.arange(500)}
    loss_sum, _ = dsm_loss({}, batch, jax.random.key(0), apply_fn=apply_fn, sde=sde, eps=0.3)
    assert seen["shape"] == (500, 2, 2, 1)
    np.testing.assert_array_equal(seen["y"], jnp.arange(500))
    assert np.all((seen["c"] >= 999 * 0.3) & (seen["c"] <= 999.0))
    loss_mean, _ = dsm_loss({}, batch, jax.random.key(0), apply_fn=apply_fn, sde=sde, eps=0.3,
                            reduce_mean=True)
    np.testing.assert_allclose(loss_mean, loss_sum / 4, rtol=1e-6)
    np.testing.assert_allclose(loss_sum, 4.0, rtol=0.1)  # eps-prediction 0: E||z||^2 = 4 (se 0.13)
    with pytest.raises(ValueError, match="choose one of eps, x0, v, score"):
        dsm_loss({}, batch, jax.random.key(0), apply_fn=apply_fn, sde=sde, prediction="noise")
