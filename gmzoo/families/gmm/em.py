"""Gaussian mixtures fitted by expectation-maximisation, as pure functions of a parameter tree.

A mixture of K Gaussians in D dimensions (Dempster, Laird & Rubin 1977; Bishop, PRML 9.2):

  p(x) = sum_k w_k N(x; mu_k, Sigma_k),   log p(x) = logsumexp_k [log w_k + log N(x; mu_k, Sigma_k)]

Parameters ``{"weights": [K], "means": [K, D], "precisions_cholesky": U}`` follow
scikit-learn's ``GaussianMixture``: ``U`` is the upper-triangular factor of the precision,
Sigma^-1 = U U^T, computed as U = L^-T from the Cholesky factor L of the covariance, so

  log N(x; mu, Sigma) = -1/2 (D log 2 pi + |(x - mu) U|^2) + sum_d log U_dd           (1)

Its shape depends on the covariance type: ``full`` [K, D, D], ``tied`` [D, D] (one covariance
shared by all components), ``diag`` [K, D] (1 / std per dimension), ``spherical`` [K] (1 / std).

One EM iteration (PRML 9.23-9.27), :func:`em_step`:
  E-step  r_bk = exp(log w_k + log N(x_b; mu_k, Sigma_k) - log p(x_b)), in log space (logsumexp);
  M-step  N_k = sum_b r_bk + 10 eps, w_k = N_k / sum_j N_j, mu_k = sum_b r_bk x_b / N_k,
          Sigma_k = sum_b r_bk (x_b - mu_k)(x_b - mu_k)^T / N_k + reg_covar I
          (tied: the N_k-weighted mean of the Sigma_k; diag: their diagonals; spherical: the
          mean of the diagonal), then U_k from Sigma_k.
The E-step ends in :func:`sufficient_statistics`: *sums over the batch* (N_k, sum_b r_bk (x_b -
s_k), and the second moments about s_k or their diagonal) that the M-step turns into parameters.
Because they are plain sums over the batch axis, ``jax.jit`` of :func:`em_step` on a batch
sharded over a device mesh (:mod:`gmzoo.train.parallel`) inserts one all-reduce and fits what one
device fits. The moments are taken about a shift ``s_k`` fixed before the step (the component's
current mean for ``full``, the mean of the current means otherwise), so that float32 keeps the
covariances positive definite: Sigma_k = S_k / N_k - d_k d_k^T with d_k = mu_k - s_k small, not
E[x x^T] - mu mu^T. ``diag`` and ``spherical`` keep scikit-learn's matrix-product forms (35x
faster than per-component differences at K = 100 on digits), about the mean of the means: their
float32 error grows like eps |x - s|^2 / var (0.03 nats at most on dequantized digits in
[0, 1]), and their variances are clipped at 0 before ``reg_covar`` is added, so rounding can
make a variance inexact but never negative.

``em_step`` returns the mean log-likelihood of the parameters it started from; EM guarantees it
never decreases from one step to the next on the same data (PRML 9.4). From the same initial
parameters :func:`fit` reproduces scikit-learn's iterations (its ``fit`` runs an E-step on the
initial parameters, then an M-step, ``max_iter`` times; its ``lower_bounds_[i]`` is our i-th
returned log-likelihood).

A singleton or collapsed component gets Sigma_k = reg_covar I (plus what rounding leaves), a
finite but sharp spike: densities can exceed 1, so positive log-likelihoods are legitimate
(scikit-learn#8453). An empty component (N_k = 0) keeps finite parameters thanks to the 10 eps
(as in scikit-learn). With ``reg_covar = 0`` a Cholesky factorisation can fail; its NaNs are
then caught by the caller's finiteness guard (:func:`gmzoo.train.step.all_finite`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

Params = dict[str, jax.Array]


def check_covariance_type(covariance_type: str) -> None:
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type={covariance_type!r}; choose one of "
                         f"{', '.join(COVARIANCE_TYPES)}")


def precisions_cholesky_shape(covariance_type: str, k: int, d: int) -> tuple[int, ...]:
    """Shape of ``U`` for K components in D dimensions (see the module docstring)."""
    check_covariance_type(covariance_type)
    return {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[covariance_type]


def num_parameters(covariance_type: str, k: int, d: int) -> int:
    """Free parameters of the mixture (as scikit-learn's ``_n_parameters``, for BIC / AIC):
    covariances + K D means + K - 1 weights."""
    check_covariance_type(covariance_type)
    cov = {"full": k * d * (d + 1) // 2, "tied": d * (d + 1) // 2, "diag": k * d,
           "spherical": k}[covariance_type]
    return cov + k * d + k - 1


# --- parameterisation -------------------------------------------------------------------------

def lower_triangular_inverse(a: jax.Array) -> jax.Array:
    """The inverse X of lower-triangular matrices ``[..., D, D]`` by forward substitution, one
    row per step of a ``fori_loop``: X_i = (e_i - a_i X) / a_ii (rows i.. of X still zero).
    XLA:CPU's triangular solve took 8 ms for one 64 x 64 factor and 0.6 s for 100 of them; this
    0.06 ms and 1.7 ms (same float32 accuracy), and compiles in 0.2 s."""
    eye = jnp.eye(a.shape[-1], dtype=a.dtype)

    def row(i, x):
        xi = (eye[i] - jnp.einsum("...j,...jk->...k", a[..., i, :], x)) / a[..., i, i, None]
        return x.at[..., i, :].set(xi)

    return jax.lax.fori_loop(0, a.shape[-1], row, jnp.zeros_like(a))


def cholesky(a: jax.Array) -> jax.Array:
    """``jnp.linalg.cholesky`` of ``[..., D, D]``, one matrix per LAPACK call (``lax.map`` over
    the batch). jaxlib's CPU Cholesky splits a batch over the intra-op thread pool and blocks
    until it is done; on several CPU devices every device's part does so from a thread of that
    same pool, and with all its threads waiting the batch never runs: EM with K > 1 full
    covariances on 8 simulated devices hung in 4 of 5 runs (``lapack_spotrf_ffi`` ->
    ``ParallelBatchMap`` -> ``BlockingCounter::Wait`` on every device thread), and 0 of 5 one
    matrix at a time. The cost: the K factorisations run one after another."""
    if a.ndim == 2:
        return jnp.linalg.cholesky(a)
    flat = a.reshape(-1, *a.shape[-2:])
    return jax.lax.map(jnp.linalg.cholesky, flat).reshape(a.shape)


def precisions_cholesky_from_covariances(covariances: ArrayLike,
                                         covariance_type: str) -> jax.Array:
    """U = L^-T with L L^T = Sigma (full [K, D, D] or tied [D, D]), 1 / sqrt(var) for diag
    [K, D] and spherical [K] (scikit-learn's ``_compute_precision_cholesky``). A covariance
    that is not positive definite gives NaNs (never an exception inside ``jit``)."""
    cov = jnp.asarray(covariances)
    if covariance_type in ("full", "tied"):
        chol = cholesky(cov)  # [..., D, D] lower
        return jnp.swapaxes(lower_triangular_inverse(chol), -1, -2)
    check_covariance_type(covariance_type)
    return jax.lax.rsqrt(cov)


def covariances_from_precisions_cholesky(precisions_cholesky: ArrayLike,
                                         covariance_type: str) -> jax.Array:
    """Sigma = (U U^T)^-1, the inverse of :func:`precisions_cholesky_from_covariances`."""
    u = jnp.asarray(precisions_cholesky)
    if covariance_type in ("full", "tied"):
        a = covariance_factor(u, covariance_type)  # U^-T, lower: Sigma = A A^T
        return a @ jnp.swapaxes(a, -1, -2)
    check_covariance_type(covariance_type)
    return 1.0 / jnp.square(u)


def covariance_factor(precisions_cholesky: jax.Array, covariance_type: str) -> jax.Array:
    """A = U^-T (lower triangular, A A^T = Sigma) for full / tied; 1 / U otherwise."""
    u = precisions_cholesky
    if covariance_type in ("full", "tied"):
        return lower_triangular_inverse(jnp.swapaxes(u, -1, -2))
    return 1.0 / u


def log_det_precisions_cholesky(precisions_cholesky: jax.Array, covariance_type: str,
                                d: int) -> jax.Array:
    """log det U = -1/2 log det Sigma: [K] (a scalar for tied)."""
    u = precisions_cholesky
    if covariance_type in ("full", "tied"):
        return jnp.sum(jnp.log(jnp.diagonal(u, axis1=-2, axis2=-1)), axis=-1)
    if covariance_type == "diag":
        return jnp.sum(jnp.log(u), axis=-1)
    return d * jnp.log(u)


def params_from_moments(weights: ArrayLike, means: ArrayLike, covariances: ArrayLike,
                        covariance_type: str) -> Params:
    """The parameter tree of weights [K], means [K, D] and covariances (shape per type)."""
    return {"weights": jnp.asarray(weights), "means": jnp.asarray(means),
            "precisions_cholesky": precisions_cholesky_from_covariances(covariances,
                                                                        covariance_type)}


# --- E-step -----------------------------------------------------------------------------------

def component_log_prob(params: Params, x: ArrayLike, covariance_type: str) -> jax.Array:
    """log N(x_b; mu_k, Sigma_k), eq. (1): [B, K] for x [B, D] (scikit-learn's
    ``_estimate_log_gaussian_prob``; diag and spherical expand |x - mu|^2 into matrix
    products, about the mean of the means so float32 loses little)."""
    x = jnp.asarray(x)
    mu, u = params["means"], params["precisions_cholesky"]  # [K, D], per type
    d = x.shape[-1]
    if covariance_type == "full":
        y = jnp.einsum("bd,kde->bke", x, u) - jnp.einsum("kd,kde->ke", mu, u)  # [B, K, D]
        maha = jnp.sum(jnp.square(y), axis=-1)  # [B, K]
    elif covariance_type == "tied":
        y = (x @ u)[:, None, :] - (mu @ u)[None]  # [B, K, D]
        maha = jnp.sum(jnp.square(y), axis=-1)
    else:
        check_covariance_type(covariance_type)
        centre = jnp.mean(mu, axis=0)  # [D]: |x - mu|^2 does not depend on it
        xc, mc = x - centre, mu - centre  # [B, D], [K, D]
        prec = jnp.square(u)  # [K, D] or [K]
        if covariance_type == "diag":
            maha = (jnp.sum(jnp.square(mc) * prec, axis=1)[None] - 2.0 * xc @ (mc * prec).T
                    + jnp.square(xc) @ prec.T)  # [B, K]
        else:
            maha = (jnp.sum(jnp.square(mc), axis=1)[None] - 2.0 * xc @ mc.T
                    + jnp.sum(jnp.square(xc), axis=1)[:, None]) * prec[None]
    log_det = log_det_precisions_cholesky(u, covariance_type, d)  # [K] or []
    return -0.5 * (d * math.log(2.0 * math.pi) + maha) + log_det


def weighted_log_prob(params: Params, x: ArrayLike, covariance_type: str) -> jax.Array:
    """log w_k + log N(x_b; mu_k, Sigma_k): [B, K]."""
    return component_log_prob(params, x, covariance_type) + jnp.log(params["weights"])


def log_prob(params: Params, x: ArrayLike, covariance_type: str) -> jax.Array:
    """log p(x_b) = logsumexp_k (log w_k + log N(x_b; mu_k, Sigma_k)): [B] in nats."""
    return jax.nn.logsumexp(weighted_log_prob(params, x, covariance_type), axis=-1)


def responsibilities(params: Params, x: ArrayLike,
                     covariance_type: str) -> tuple[jax.Array, jax.Array]:
    """The E-step (PRML 9.23) in log space: ``(log p(x) [B], r [B, K])``, r_bk = p(k | x_b)."""
    wlp = weighted_log_prob(params, x, covariance_type)  # [B, K]
    lp = jax.nn.logsumexp(wlp, axis=-1)  # [B]
    return lp, jnp.exp(wlp - lp[:, None])


class SufficientStatistics(NamedTuple):
    """Sums over a batch that the M-step needs (each a plain sum over the batch axis, so they
    add over shards of a batch); moments are about ``shift`` [K, D], a constant of the step."""

    count: jax.Array  # [K]       sum_b r_bk
    first: jax.Array  # [K, D]    sum_b r_bk (x_b - s_k)
    second: jax.Array  # full [K, D, D] sum_b r_bk (x_b - s_k)(x_b - s_k)^T; tied [D, D]
    #                    sum_b (x_b - s)(x_b - s)^T; diag/spherical [K, D] sum_b r_bk (x_b - s_k)^2
    shift: jax.Array  # [K, D]   s_k (the same row for every k except with full covariances)
    log_likelihood: jax.Array  # []  sum_b log p(x_b) under the parameters of the E-step


def shift_of(params: Params, covariance_type: str) -> jax.Array:
    """The moments' shift [K, D]: the current means (full), else the weighted mean of the means
    on every row (tied's second moment does not depend on the responsibilities)."""
    mu = params["means"]
    if covariance_type == "full":
        return mu
    centre = params["weights"] @ mu / jnp.sum(params["weights"])  # [D]
    return jnp.broadcast_to(centre, mu.shape)


def statistics_from_responsibilities(resp: ArrayLike, x: ArrayLike, shift: ArrayLike,
                                     covariance_type: str,
                                     log_likelihood: ArrayLike = 0.0) -> SufficientStatistics:
    """:class:`SufficientStatistics` of responsibilities r [B, K] (soft, or one-hot for a hard
    assignment) on x [B, D], moments about ``shift`` [K, D]."""
    r, x, s = jnp.asarray(resp), jnp.asarray(x), jnp.asarray(shift)
    count = jnp.sum(r, axis=0)  # [K]
    if covariance_type == "full":
        diff = x[:, None, :] - s[None]  # [B, K, D]
        first = jnp.einsum("bk,bkd->kd", r, diff)
        second = jnp.einsum("bkd,bke->kde", r[..., None] * diff, diff)  # [K, D, D]
    else:
        check_covariance_type(covariance_type)
        xc = x - s[0]  # [B, D]: one shift for every component
        first = r.T @ xc  # [K, D]
        second = xc.T @ xc if covariance_type == "tied" else r.T @ jnp.square(xc)
    return SufficientStatistics(count, first, second, s, jnp.asarray(log_likelihood, x.dtype))


def sufficient_statistics(params: Params, x: ArrayLike,
                          covariance_type: str) -> SufficientStatistics:
    """E-step on a batch x [B, D]: the responsibilities under ``params`` summed into
    :class:`SufficientStatistics` (with the batch's total log-likelihood)."""
    lp, r = responsibilities(params, x, covariance_type)
    return statistics_from_responsibilities(r, x, shift_of(params, covariance_type),
                                            covariance_type, jnp.sum(lp))


def add_statistics(a: SufficientStatistics, b: SufficientStatistics) -> SufficientStatistics:
    """The statistics of the union of two batches (taken about the same shift)."""
    return SufficientStatistics(a.count + b.count, a.first + b.first, a.second + b.second,
                                a.shift, a.log_likelihood + b.log_likelihood)


# --- M-step -----------------------------------------------------------------------------------

def m_step(stats: SufficientStatistics, covariance_type: str, reg_covar: float) -> Params:
    """The M-step (PRML 9.24-9.26; scikit-learn's ``_estimate_gaussian_parameters``) from
    sufficient statistics: weights, means, covariances + ``reg_covar`` I, then U."""
    dtype = stats.first.dtype
    nk = stats.count + 10.0 * jnp.finfo(dtype).eps  # [K] (keeps empty components finite)
    delta = stats.first / nk[:, None]  # [K, D]  mu_k - s_k
    means = stats.shift + delta
    weights = nk / jnp.sum(nk)
    d = means.shape[-1]
    if covariance_type == "full":
        cov = stats.second / nk[:, None, None] - delta[:, :, None] * delta[:, None, :]
        cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2)) + reg_covar * jnp.eye(d, dtype=dtype)
    elif covariance_type == "tied":
        # sum_k sum_b r_bk (x_b - mu_k)(x_b - mu_k)^T = sum_b (x_b - s)(x_b - s)^T
        #                                                - sum_k N_k (mu_k - s)(mu_k - s)^T
        between = jnp.einsum("k,kd,ke->de", nk, delta, delta)
        cov = (stats.second - between) / jnp.sum(nk)
        cov = 0.5 * (cov + cov.T) + reg_covar * jnp.eye(d, dtype=dtype)
    else:
        check_covariance_type(covariance_type)
        var = jnp.maximum(stats.second / nk[:, None] - jnp.square(delta), 0.0) + reg_covar
        cov = var if covariance_type == "diag" else jnp.mean(var, axis=1)
    return {"weights": weights, "means": means,
            "precisions_cholesky": precisions_cholesky_from_covariances(cov, covariance_type)}


def em_step(params: Params, x: ArrayLike, covariance_type: str,
            reg_covar: float = 1e-6) -> tuple[Params, jax.Array]:
    """One EM iteration on x [B, D]: ``(new params, mean log-likelihood of params on x)``."""
    stats = sufficient_statistics(params, x, covariance_type)
    return m_step(stats, covariance_type, reg_covar), stats.log_likelihood / x.shape[0]


def fit(params: Params, x: ArrayLike, covariance_type: str, num_steps: int,
        reg_covar: float = 1e-6) -> tuple[Params, jax.Array]:
    """``num_steps`` EM iterations as one ``lax.scan``: ``(params, log-likelihoods
    [num_steps])``, entry i the mean log-likelihood before iteration i (scikit-learn's
    ``lower_bounds_`` with ``tol=0``, ``max_iter=num_steps`` and the same initialisation)."""
    x = jnp.asarray(x)

    def body(p, _):
        return em_step(p, x, covariance_type, reg_covar)

    return jax.lax.scan(body, params, None, length=num_steps)


# --- sampling ---------------------------------------------------------------------------------

def sample(params: Params, key: jax.Array, n: int, covariance_type: str, *,
           mean: bool = False) -> tuple[jax.Array, jax.Array]:
    """Ancestral sampling: k ~ Categorical(w), x = mu_k + A_k eps, eps ~ N(0, I), A_k = U_k^-T
    (so A_k A_k^T = Sigma_k). Returns ``(x [n, D], k [n])``; ``mean=True`` gives mu_k."""
    k_key, eps_key = jax.random.split(key)
    mu, u = params["means"], params["precisions_cholesky"]
    comp = jax.random.categorical(k_key, jnp.log(params["weights"]), shape=(n,))  # [n]
    if mean:
        return mu[comp], comp
    eps = jax.random.normal(eps_key, (n, mu.shape[-1]), mu.dtype)  # [n, D]
    a = covariance_factor(u, covariance_type)
    if covariance_type == "full":
        noise = jnp.einsum("nde,ne->nd", a[comp], eps)
    elif covariance_type == "tied":
        noise = eps @ a.T
    elif covariance_type == "diag":
        noise = eps * a[comp]
    else:
        noise = eps * a[comp][:, None]
    return mu[comp] + noise, comp
