"""Guidance on a two-class Gaussian mixture, where p(y | x_t) and every score are analytic.

Classes y in {0, 1} with x_0 | y ~ N(m_y, v I) in 2-D and equal priors. At noise level t,
x_t | y ~ N(alpha m_y, (alpha^2 v + sigma^2) I), so Bayes gives p(y | x_t) exactly, and
score(x_t) + grad log p(y | x_t) = score(x_t | y): classifier guidance with scale 1 and the
exact classifier must sample class y. Classifier-free guidance with w = 0 and the exact
conditional noise is the conditional model; with w > 0 it sharpens towards the class.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.diffusion import guidance, samplers, schedules

pytestmark = pytest.mark.optimized  # real compute: full XLA optimisation (tests/conftest.py)

M = jnp.array([[1.5, 0.0], [-1.5, 0.5]])
V = 0.1


def _cond_eps(x, alpha, sigma, y):
    var = alpha ** 2 * V + sigma ** 2
    return sigma[:, None] * (x - alpha[:, None] * M[y]) / var[:, None]


def _log_p_y(x, alpha, sigma):
    var = alpha ** 2 * V + sigma ** 2
    d2 = jnp.sum((x[:, None, :] - alpha[:, None, None] * M[None]) ** 2, -1)  # [B, 2]
    return jax.nn.log_softmax(-0.5 * d2 / var[:, None], axis=-1)


def _uncond_eps(x, alpha, sigma):
    w = jnp.exp(_log_p_y(x, alpha, sigma))  # posterior weights of the two components
    return (w[:, :1] * _cond_eps(x, alpha, sigma, jnp.zeros(len(x), jnp.int32))
            + w[:, 1:] * _cond_eps(x, alpha, sigma, jnp.ones(len(x), jnp.int32)))


S = schedules.linear(1000)
co = lambda t: schedules.coeffs(S, t)


def _sample(eps_fn, n=2000):
    x_T = jax.random.normal(jax.random.key(0), (n, 2))
    return np.asarray(jax.jit(lambda k: samplers.ddim(eps_fn, k, x_T, S, num_steps=100))(jax.random.key(1)))


def test_classifier_guidance_with_the_exact_classifier_samples_the_class():
    for label in (0, 1):
        y = jnp.full((2000,), label, jnp.int32)
        guided = guidance.classifier_guided(lambda x, t: _uncond_eps(x, *co(t)),
                                            lambda x, t: _log_p_y(x, *co(t)), y, 1.0,
                                            lambda t: co(t)[1])
        x = _sample(guided)
        np.testing.assert_allclose(x.mean(0), M[label], atol=0.05)
        np.testing.assert_allclose(x.var(0), [V, V], atol=0.02)
    unguided = _sample(lambda x, t: _uncond_eps(x, *co(t)))  # both modes, half each
    assert 0.4 < np.mean(unguided[:, 0] > 0) < 0.6


def test_classifier_free_guidance_formula_and_batching():
    y = jnp.zeros((2000,), jnp.int32)
    cond = lambda x, t: _cond_eps(x, *co(t), y)
    uncond = lambda x, t: _uncond_eps(x, *co(t))
    x0 = _sample(guidance.classifier_free(cond, uncond, 0.0))
    np.testing.assert_allclose(x0.mean(0), M[0], atol=0.05)
    np.testing.assert_allclose(x0.var(0), [V, V], atol=0.02)
    # w > 0 extrapolates away from the other class: along the axis between the class means
    # the samples move past m_0 and tighten (across it, where the classes agree, little changes)
    x3 = _sample(guidance.classifier_free(cond, uncond, 3.0))
    assert x3[:, 0].mean() > M[0, 0] + 0.1 and x3[:, 0].var() < 0.5 * V, (x3.mean(0), x3.var(0))
    # the batched form (one network call on [2B]) is the same function
    null = 2

    def apply(x, t, labels):
        c = _cond_eps(x, *co(t), jnp.minimum(labels, 1))
        return jnp.where((labels == null)[:, None], _uncond_eps(x, *co(t)), c)

    xs = jax.random.normal(jax.random.key(5), (7, 2))
    t = jnp.full((7,), 300)
    a = guidance.classifier_free(lambda x, t: _cond_eps(x, *co(t), y[:7]), uncond, 2.0)(xs, t)
    b = guidance.classifier_free_batched(apply, y[:7], null, 2.0)(xs, t)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
