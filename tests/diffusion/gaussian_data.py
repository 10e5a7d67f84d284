"""Gaussian data N(mu, Sigma), where every quantity a diffusion model learns is analytic.

x_t = alpha_t x_0 + sigma_t eps  =>  x_t ~ N(alpha_t mu, C_t), C_t = alpha_t^2 Sigma + sigma_t^2 I,
score(x_t) = -C_t^{-1} (x_t - alpha_t mu), and the optimal noise predictor is
E[eps | x_t] = -sigma_t score(x_t).
"""

import jax.numpy as jnp
import numpy as np

MU = np.array([0.6, -0.4, 0.2])
A = np.array([[0.5, 0.1, 0.0], [0.2, 0.35, 0.05], [0.0, -0.1, 0.3]])
SIGMA = A @ A.T  # positive definite, correlated


def exact_score(x, alpha, sigma, mu=MU, cov=SIGMA):
    """score of N(alpha mu, alpha^2 cov + sigma^2 I) at x [B, d]; alpha, sigma [B]."""
    d = len(mu)
    a, s = alpha[:, None, None], sigma[:, None, None]
    C = a ** 2 * jnp.asarray(cov, jnp.float32) + s ** 2 * jnp.eye(d)
    r = x - alpha[:, None] * jnp.asarray(mu, jnp.float32)
    return -jnp.linalg.solve(C, r[..., None])[..., 0]


def exact_eps(x, alpha, sigma, mu=MU, cov=SIGMA):
    return -sigma[:, None] * exact_score(x, alpha, sigma, mu, cov)


def moments(x):
    x = np.asarray(x, np.float64)
    return x.mean(0), np.cov(x, rowvar=False)
