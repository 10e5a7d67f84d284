"""ELBO <= IWAE <= log p(x) on linear-Gaussian models whose log p(x) is exact.

One stochastic layer: z ~ N(0, I), x | z ~ N(W z + b, s^2 I), so x ~ N(b, W W^T + s^2 I).
Two layers: z2 ~ N(0, I), z1 | z2 ~ N(v * z2 + a, r^2 I), x | z1 ~ N(W z1 + b, s^2 I), so
x ~ N(W a + b, W diag(v^2 + r^2) W^T + s^2 I). W has orthogonal columns, so every exact
posterior is a diagonal Gaussian and an encoder can represent it exactly.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gmzoo.losses.vae import (
    elbo_terms,
    hierarchical_elbo_terms,
    hierarchical_iwae_bound,
    iwae_bound,
)
from gmzoo.samplers.vae import sample_hierarchical_vae, sample_vae

IMAGE_SHAPE = (3, 2, 1)
D, Z = math.prod(IMAGE_SHAPE), 2
NUM_KEYS = 2000

_rng = np.random.default_rng(0)
_Q, _ = np.linalg.qr(_rng.normal(size=(D, Z)))
W_SCALES = np.array([1.5, 0.8])
W = _Q * W_SCALES  # [D, Z], W^T W = diag(W_SCALES^2)
B = _rng.normal(size=D)
S = 0.6
V, A_SHIFT, R = np.array([1.2, -0.7]), np.array([0.3, -0.5]), 0.5


def _zeros(key, shape):
    return jnp.zeros(shape)  # never used: the tests always pass explicit params


class LinearGaussianVAE(nn.Module):
    """encode(x) = (A x + c, log_var); decode(z) = (W z + b, log s) as a Gaussian likelihood."""

    def setup(self):
        names = {"W": (D, Z), "b": (D,), "log_s": (), "A": (Z, D), "c": (Z,), "log_var": (Z,)}
        self.p = {name: self.param(name, _zeros, shape) for name, shape in names.items()}

    def encode(self, x):
        p = self.p
        mean = x.reshape(x.shape[0], -1) @ p["A"].T + p["c"]  # [B, Z]
        return mean, jnp.broadcast_to(p["log_var"], mean.shape)

    def decode(self, z):
        p = self.p
        mean = (z @ p["W"].T + p["b"]).reshape(z.shape[0], *IMAGE_SHAPE)  # [B, H, W, C]
        return mean, jnp.full_like(mean, p["log_s"])

    def __call__(self, x, key):
        mean, log_var = self.encode(x)
        z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape)
        return self.decode(z), mean, log_var


class LinearGaussianHVAE(nn.Module):
    """Two-layer linear-Gaussian model with the HierarchicalVAE method signatures."""

    def setup(self):
        names = {
            "W": (D, Z), "b": (D,), "log_s": (), "v": (Z,), "a": (Z,), "log_r": (),
            "A": (Z, D), "c": (Z,), "q1_log_var": (Z,), "g": (Z,), "h": (Z,), "q2_log_var": (Z,),
        }  # fmt: skip
        self.p = {name: self.param(name, _zeros, shape) for name, shape in names.items()}

    def encode(self, x):
        p = self.p
        mean = x.reshape(x.shape[0], -1) @ p["A"].T + p["c"]
        return mean, jnp.broadcast_to(p["q1_log_var"], mean.shape)

    def prior(self, z, layer):
        assert layer == 1
        p = self.p
        mean = p["v"] * z + p["a"]
        return mean, jnp.full_like(mean, 2.0 * p["log_r"])

    def decode(self, z):
        p = self.p
        mean = (z @ p["W"].T + p["b"]).reshape(z.shape[0], *IMAGE_SHAPE)
        return mean, jnp.full_like(mean, p["log_s"])

    def infer(self, mean_1, log_var_1, key):
        p = self.p
        key_1, key_2 = jax.random.split(key)
        z1 = mean_1 + jnp.exp(0.5 * log_var_1) * jax.random.normal(key_1, mean_1.shape)
        mean_2, log_var_2 = p["g"] * z1 + p["h"], jnp.broadcast_to(p["q2_log_var"], z1.shape)
        z2 = mean_2 + jnp.exp(0.5 * log_var_2) * jax.random.normal(key_2, z1.shape)
        top = jnp.zeros_like(z2)
        return (z1, z2), ((mean_1, log_var_1), (mean_2, log_var_2)), (self.prior(z2, 1), (top, top))

    def __call__(self, x, key):
        zs, posteriors, priors = self.infer(*self.encode(x), key)
        return self.decode(zs[0]), zs, posteriors, priors


def _one_layer_params(exact: bool):
    post_var = 1.0 / (1.0 + W_SCALES**2 / S**2)  # diag of (I + W^T W / s^2)^-1
    enc = post_var[:, None] * W.T / S**2  # posterior mean = enc (x - b)
    params = {"W": W, "b": B, "log_s": np.log(S), "A": enc, "c": -enc @ B, "log_var": np.log(post_var)}
    if not exact:
        params.update(A=0.8 * enc, c=-enc @ B + 0.2, log_var=np.log(post_var) + 0.4)
    return {"params": jax.tree.map(lambda t: jnp.asarray(t, jnp.float32), params)}


def _two_layer_params(exact: bool):
    prior_var_1 = V**2 + R**2  # marginal p(z1) = N(a, diag(v^2 + r^2))
    q1_var = 1.0 / (1.0 / prior_var_1 + W_SCALES**2 / S**2)
    enc = q1_var[:, None] * W.T / S**2
    q2_var = 1.0 / (1.0 + V**2 / R**2)
    g = q2_var * V / R**2
    params = {
        "W": W, "b": B, "log_s": np.log(S), "v": V, "a": A_SHIFT, "log_r": np.log(R),
        "A": enc, "c": q1_var * A_SHIFT / prior_var_1 - enc @ B, "q1_log_var": np.log(q1_var),
        "g": g, "h": -g * A_SHIFT, "q2_log_var": np.log(q2_var),
    }  # fmt: skip
    if not exact:
        params.update(A=0.8 * enc, q1_log_var=np.log(q1_var) + 0.4, g=0.8 * g, q2_log_var=np.log(q2_var) + 0.3)
    return {"params": jax.tree.map(lambda t: jnp.asarray(t, jnp.float32), params)}


def _data(mean, cov, n=4):
    x = np.random.default_rng(1).multivariate_normal(mean, cov, size=n)
    return jnp.asarray(x.reshape(n, *IMAGE_SHAPE), jnp.float32), stats.multivariate_normal(mean, cov).logpdf(x)


ONE_LAYER_DATA = _data(B, W @ W.T + S**2 * np.eye(D))
TWO_LAYER_DATA = _data(W @ A_SHIFT + B, W @ np.diag(V**2 + R**2) @ W.T + S**2 * np.eye(D))


def _analytic_elbo(params, x):
    """E_q log N(x; Wz+b, s^2 I) - KL(q || N(0, I)) in closed form, float64."""
    p = {k: np.asarray(v, np.float64) for k, v in params["params"].items()}
    x = np.asarray(x, np.float64).reshape(x.shape[0], -1)
    mean, var = x @ p["A"].T + p["c"], np.exp(p["log_var"])
    s2 = np.exp(2 * p["log_s"])
    resid = x - mean @ p["W"].T - p["b"]
    expected_log_lik = (
        -0.5 * D * np.log(2 * np.pi * s2)
        - 0.5 * np.sum(resid**2, -1) / s2
        - 0.5 * np.sum(p["W"] ** 2 * var) / s2
    )
    kl = 0.5 * np.sum(var + mean**2 - 1.0 - np.log(var), -1)
    return expected_log_lik - kl


@functools.partial(jax.jit, static_argnames="hierarchical")
def _estimates(params, x, hierarchical: bool):
    """NUM_KEYS independent one-sample ELBOs `[NUM_KEYS, B]` and 16 IWAE(k=1000) estimates
    `[16, B]` per example (one chunk each; chunking is tested in test_vae_losses). Params are
    an argument, so each model compiles once for both tests that use it."""
    if hierarchical:
        apply_fn, terms_fn, bound_fn = LinearGaussianHVAE().apply, hierarchical_elbo_terms, hierarchical_iwae_bound
    else:
        apply_fn, terms_fn, bound_fn = LinearGaussianVAE().apply, elbo_terms, iwae_bound

    def tiled(n):  # n copies of the batch: each copy draws its own samples
        return jnp.tile(x, (n, 1, 1, 1))

    recon, kl = terms_fn(params, tiled(NUM_KEYS), jax.random.key(7), apply_fn=apply_fn, likelihood="gaussian")
    elbos = recon - (sum(kl) if hierarchical else kl)
    iwaes = bound_fn(
        params, tiled(16), jax.random.key(11), apply_fn=apply_fn, likelihood="gaussian", k=1000, chunk=1000
    )
    return elbos.reshape(NUM_KEYS, -1), iwaes.reshape(16, -1)


def _mean_and_se(values):
    values = np.asarray(values, np.float64)
    return values.mean(0), values.std(0) / np.sqrt(values.shape[0])


def test_exact_posterior_makes_elbo_and_iwae_equal_log_px():
    params = _one_layer_params(exact=True)
    x, log_px = ONE_LAYER_DATA
    np.testing.assert_allclose(_analytic_elbo(params, x), log_px, atol=1e-4)  # the test's own math
    elbos, iwaes = _estimates(params, x, hierarchical=False)
    mc, se = _mean_and_se(elbos)
    np.testing.assert_array_less(np.abs(mc - log_px), 4 * se + 1e-4)
    # With q = p(z | x) every importance weight equals p(x): every estimate is exact.
    np.testing.assert_allclose(iwaes, np.broadcast_to(log_px, iwaes.shape), atol=2e-4)


def test_elbo_below_log_px_and_iwae_closes_the_gap():
    params = _one_layer_params(exact=False)
    x, log_px = ONE_LAYER_DATA
    analytic = _analytic_elbo(params, x)
    assert np.all(log_px - analytic > 0.05), log_px - analytic  # a real gap, KL(q || posterior)
    elbos, iwaes = _estimates(params, x, hierarchical=False)
    mc, se = _mean_and_se(elbos)
    np.testing.assert_array_less(np.abs(mc - analytic), 4 * se)  # elbo_terms is unbiased
    iwae, iwae_se = _mean_and_se(iwaes)
    assert np.all(iwae_se < 0.01), iwae_se
    assert np.all(iwae > analytic + 0.04)
    # IWAE(k) <= log p(x) with a bias that falls like 1/k: at k = 1000 only the MC error is left.
    np.testing.assert_array_less(np.abs(iwae - log_px), 4 * iwae_se + 0.003)


def test_hierarchical_exact_posterior_gives_log_px():
    params = _two_layer_params(exact=True)
    x, log_px = TWO_LAYER_DATA
    elbos, iwaes = _estimates(params, x, hierarchical=True)
    np.testing.assert_allclose(iwaes, np.broadcast_to(log_px, iwaes.shape), atol=2e-4)
    mc, se = _mean_and_se(elbos)
    np.testing.assert_array_less(np.abs(mc - log_px), 4 * se + 1e-4)


def test_hierarchical_elbo_below_log_px_and_iwae_closes_the_gap():
    params = _two_layer_params(exact=False)
    x, log_px = TWO_LAYER_DATA
    elbos, iwaes = _estimates(params, x, hierarchical=True)
    mc, se = _mean_and_se(elbos)
    assert np.all(mc + 4 * se < log_px - 0.05), (mc, se, log_px)
    iwae, iwae_se = _mean_and_se(iwaes)
    assert np.all(iwae_se < 0.01), iwae_se
    assert np.all(iwae > mc + 4 * se)
    np.testing.assert_array_less(np.abs(iwae - log_px), 4 * iwae_se + 0.003)


@pytest.mark.parametrize("hierarchical", [False, True])
def test_samplers_recover_the_exact_data_distribution(hierarchical):
    """Ancestral samples (mean=False) have the model's exact mean and covariance."""
    n = 20_000
    if hierarchical:
        params, (mean, cov) = _two_layer_params(True), (W @ A_SHIFT + B, W @ np.diag(V**2 + R**2) @ W.T)
        sampler = functools.partial(sample_hierarchical_vae, apply_fn=LinearGaussianHVAE().apply,
                                    latent_dim=Z, num_layers=2, likelihood="gaussian", mean=False)  # fmt: skip
    else:
        params, (mean, cov) = _one_layer_params(True), (B, W @ W.T)
        sampler = functools.partial(sample_vae, apply_fn=LinearGaussianVAE().apply, latent_dim=Z,
                                    likelihood="gaussian", mean=False)  # fmt: skip
    samples = jax.jit(sampler, static_argnums=2)(params, jax.random.key(3), n)
    cov = cov + S**2 * np.eye(D)
    samples = np.asarray(samples, np.float64).reshape(n, D)
    se = np.sqrt(np.diag(cov) / n)
    np.testing.assert_array_less(np.abs(samples.mean(0) - mean), 4 * se)
    np.testing.assert_allclose(np.cov(samples.T), cov, atol=0.06)
