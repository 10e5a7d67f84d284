"""Closed-form Gaussian identities against Monte-Carlo estimates and scipy."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from gmzoo.losses.gaussian import (
    diag_gaussian_log_prob,
    gaussian_kl,
    gaussian_kl_two,
    reparameterize,
    standard_normal_log_prob,
)

MEAN_Q = jnp.array([[0.5, -1.0, 2.0], [0.0, 0.3, -0.2]])
LOG_VAR_Q = jnp.array([[-1.0, 0.5, 0.0], [1.2, -2.0, 0.3]])
MEAN_P = jnp.array([[0.1, 0.0, 1.0], [-0.5, 0.5, 0.0]])
LOG_VAR_P = jnp.array([[0.4, -0.3, 0.0], [0.0, -1.0, 1.0]])
NUM_SAMPLES = 200_000


def _mc_mean_and_se(samples: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    samples = np.asarray(samples, dtype=np.float64)
    return samples.mean(0), samples.std(0) / np.sqrt(samples.shape[0])


@jax.jit
def _draws(key):
    """z ~ q `[N, 2, 3]` and the per-sample log-ratios log q/N(0,I) and log q/p, `[N, 2]` each."""
    z = reparameterize(key, MEAN_Q, jnp.broadcast_to(LOG_VAR_Q, (NUM_SAMPLES, *LOG_VAR_Q.shape)))
    log_q = diag_gaussian_log_prob(z, MEAN_Q, LOG_VAR_Q)
    return z, log_q - standard_normal_log_prob(z), log_q - diag_gaussian_log_prob(z, MEAN_P, LOG_VAR_P)


def test_closed_form_kls_match_monte_carlo():
    """Means of log q(z)/p(z), z ~ q, equal the closed forms within 4 standard errors."""
    _, log_ratio_std, log_ratio_p = _draws(jax.random.key(0))
    mc, se = _mc_mean_and_se(log_ratio_std)
    np.testing.assert_array_less(np.abs(mc - np.asarray(gaussian_kl(MEAN_Q, LOG_VAR_Q))), 4 * se)
    mc, se = _mc_mean_and_se(log_ratio_p)
    closed = np.asarray(gaussian_kl_two(MEAN_Q, LOG_VAR_Q, MEAN_P, LOG_VAR_P))
    np.testing.assert_array_less(np.abs(mc - closed), 4 * se)


def test_kl_closed_forms_agree_and_vanish_only_at_equality():
    zeros = jnp.zeros_like(MEAN_Q)
    np.testing.assert_allclose(
        gaussian_kl_two(MEAN_Q, LOG_VAR_Q, zeros, zeros), gaussian_kl(MEAN_Q, LOG_VAR_Q), rtol=1e-6
    )
    np.testing.assert_allclose(gaussian_kl_two(MEAN_P, LOG_VAR_P, MEAN_P, LOG_VAR_P), 0.0, atol=1e-6)
    assert np.all(np.asarray(gaussian_kl_two(MEAN_Q, LOG_VAR_Q, MEAN_P, LOG_VAR_P)) > 0.1)
    # 1-D textbook value: KL(N(1, 2^2) || N(0, 1)) = (4 + 1 - 1 - log 4) / 2.
    np.testing.assert_allclose(
        gaussian_kl(jnp.array([[1.0]]), jnp.log(jnp.array([[4.0]]))), [(4.0 - np.log(4.0)) / 2], rtol=1e-6
    )


def test_diag_gaussian_log_prob_matches_scipy():
    z = jnp.array([[0.3, -1.2, 2.5], [1.0, 0.0, -0.5]])
    expected = [
        stats.multivariate_normal(np.asarray(m), np.diag(np.exp(np.asarray(lv)))).logpdf(np.asarray(x))
        for x, m, lv in zip(z, MEAN_Q, LOG_VAR_Q)
    ]
    np.testing.assert_allclose(diag_gaussian_log_prob(z, MEAN_Q, LOG_VAR_Q), expected, rtol=1e-5)
    np.testing.assert_allclose(
        standard_normal_log_prob(z), stats.multivariate_normal(np.zeros(3)).logpdf(np.asarray(z)), rtol=1e-5
    )


def test_reparameterize_moments():
    z, _, _ = _draws(jax.random.key(0))
    mean, se = _mc_mean_and_se(z)
    np.testing.assert_array_less(np.abs(mean - np.asarray(MEAN_Q)), 4 * se)
    np.testing.assert_allclose(np.var(np.asarray(z), axis=0), np.exp(LOG_VAR_Q), rtol=0.02)


def test_reparameterization_gradient_matches_analytic():
    """d/dmean E[sum z^2] = 2 mean and d/dlog_var E[sum z^2] = exp(log_var): the gradient
    flows through the sample (a `stop_gradient` on z or eps misuse would break this)."""
    keys = jax.random.split(jax.random.key(3), 20_000)
    mean, log_var = MEAN_Q[0], LOG_VAR_Q[0]

    def per_key_grad(key):
        return jax.grad(lambda m, lv: jnp.sum(reparameterize(key, m, lv) ** 2), argnums=(0, 1))(
            mean, log_var
        )

    grad_mean, grad_log_var = jax.jit(jax.vmap(per_key_grad))(keys)
    for grads, expected in ((grad_mean, 2 * mean), (grad_log_var, jnp.exp(log_var))):
        mc, se = _mc_mean_and_se(grads)
        np.testing.assert_array_less(np.abs(mc - np.asarray(expected)), 4 * se + 1e-6)
