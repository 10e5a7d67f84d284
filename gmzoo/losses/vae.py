"""VAE objectives: ELBO (beta-weighted), Markovian hierarchical ELBO, importance-weighted bounds.

`params` is whatever `apply_fn` takes first (e.g. the variables dict `{"params": ...}` from
`model.init`); `apply_fn` is Linen-style `apply_fn(params, *args, method=None)`. Any module with
the methods below plugs in, e.g. a hand-written linear-Gaussian model in the tests:

- VAE: `__call__(x, key) -> (decoder_output, mean, log_var)`, `encode(x) -> (mean, log_var)`,
  `decode(z) -> decoder_output`.
- Hierarchical VAE (`gmzoo.models.vae.HierarchicalVAE`): `__call__(x, key) -> (decoder_output,
  zs, posteriors, priors)`, `encode`, `infer(mean_1, log_var_1, key)`, `decode`.

`likelihood` is a name in `gmzoo.losses.likelihoods.LIKELIHOODS` (with `num_levels` for
"discretized_logistic") or a function `(x, decoder_output) -> [B]`; `batch["image"]` must
already be in that likelihood's data range. All log-densities are in nats per image.

The autoencoder losses live in `gmzoo.losses.autoencoder` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gmzoo.losses.autoencoder import (  # noqa: F401  (re-exported: contract names)
    denoising_ae_loss,
    reconstruction_loss,
    regularized_ae_loss,
)
from gmzoo.losses.gaussian import (
    diag_gaussian_log_prob,
    gaussian_kl,
    reparameterize,
    standard_normal_log_prob,
)
from gmzoo.losses.likelihoods import LogLikelihood, resolve_likelihood

Metrics = dict[str, jax.Array]
Likelihood = str | LogLikelihood


def elbo_terms(
    params, x: jax.Array, key: jax.Array, *, apply_fn: Callable, likelihood: Likelihood,
    num_levels: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """One-sample ELBO terms per example (notes 002 eq. (*)): `(recon, kl)`, each `[B]`.

    recon = log p(x | z), z ~ q(z | x) reparameterised; kl = KL(q(z | x) || N(0, I)) closed form.
    ELBO = recon - kl <= log p(x).
    """
    log_likelihood = resolve_likelihood(likelihood, num_levels=num_levels)
    decoder_output, mean, log_var = apply_fn(params, x, key)  # mean, log_var: [B, Z]
    return log_likelihood(x, decoder_output), gaussian_kl(mean, log_var)


def elbo_loss(
    params, batch: dict[str, jax.Array], key: jax.Array, *, apply_fn: Callable,
    likelihood: Likelihood, beta: float = 1.0, num_levels: int | None = None,
) -> tuple[jax.Array, Metrics]:
    """loss = -mean_b [log p(x | z) - beta KL(q(z | x) || p(z))] (notes 002 eq. (**); beta != 1
    is the beta-VAE of Higgins et al. 2017). Metrics (means over the batch, nats per image):
    "elbo" (always with beta = 1), "recon" = log p(x | z), "kl".
    """
    recon, kl = elbo_terms(
        params, batch["image"], key, apply_fn=apply_fn, likelihood=likelihood, num_levels=num_levels
    )
    loss = -jnp.mean(recon - beta * kl)
    return loss, {"elbo": jnp.mean(recon - kl), "recon": jnp.mean(recon), "kl": jnp.mean(kl)}


def hierarchical_elbo_terms(
    params, x: jax.Array, key: jax.Array, *, apply_fn: Callable, likelihood: Likelihood,
    num_levels: int | None = None,
) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """One-sample Markovian HVAE ELBO terms (notes 002, "Markovian Hierarchical VAE"):

        ELBO = E_q[log p(x | z_1)] - sum_{t<T} E_q[log q(z_t | z_{t-1}) - log p(z_t | z_{t+1})]
               - E_q[KL(q(z_T | z_{T-1}) || N(0, I))]      (z_0 = x)

    Returns `(recon [B], kls)` with kls[t-1] `[B]` the layer-t term: a one-sample log-ratio for
    t < T (p(z_t | z_{t+1}) depends on a draw of z_{t+1}, so no closed form) and the closed-form
    KL for the top layer T.
    """
    log_likelihood = resolve_likelihood(likelihood, num_levels=num_levels)
    decoder_output, zs, posteriors, priors = apply_fn(params, x, key)
    kls = [
        diag_gaussian_log_prob(z, *posterior) - diag_gaussian_log_prob(z, *prior)
        for z, posterior, prior in zip(zs[:-1], posteriors[:-1], priors[:-1])
    ]
    kls.append(gaussian_kl(*posteriors[-1]))  # p(z_T) = N(0, I)
    return log_likelihood(x, decoder_output), tuple(kls)


def hierarchical_elbo_loss(
    params, batch: dict[str, jax.Array], key: jax.Array, *, apply_fn: Callable,
    likelihood: Likelihood, beta: float = 1.0, num_levels: int | None = None,
) -> tuple[jax.Array, Metrics]:
    """loss = -mean_b [log p(x | z_1) - beta sum_t kl_t] (see `hierarchical_elbo_terms`).

    Metrics: "elbo", "recon", "kl" (sum over layers) and "kl_1" .. "kl_T".
    """
    recon, kls = hierarchical_elbo_terms(
        params, batch["image"], key, apply_fn=apply_fn, likelihood=likelihood, num_levels=num_levels
    )
    kl = sum(kls)  # [B]
    loss = -jnp.mean(recon - beta * kl)
    metrics = {"elbo": jnp.mean(recon - kl), "recon": jnp.mean(recon), "kl": jnp.mean(kl)}
    metrics.update({f"kl_{t}": jnp.mean(kl_t) for t, kl_t in enumerate(kls, start=1)})
    return loss, metrics


def log_mean_exp_chunked(
    log_weight_fn: Callable[[jax.Array], jax.Array], key: jax.Array, k: int, chunk: int
) -> jax.Array:
    """log (1/k) sum_{i=1}^k exp(log_weight_fn(key_i)) with `key_i = split(key, k)[i]`, `[B]`.

    `chunk` weights are computed at once (vmap) and chunks are folded by `lax.scan` into a
    running (max, sum of exp) logsumexp, so memory grows with `chunk`, not with `k`. The result
    does not depend on `chunk`.
    """
    if k < 1 or chunk < 1:
        raise ValueError(f"k and chunk must be positive integers, got k={k}, chunk={chunk}")
    chunk = min(chunk, k)
    num_full, remainder = divmod(k, chunk)
    keys = jax.random.split(key, k)  # [k]
    chunk_log_weights = jax.vmap(log_weight_fn)  # keys [c] -> [c, B]

    def fold(carry, log_w):  # carry: (running max [B], sum exp(log_w - max) [B]); log_w [c, B]
        running_max, total = carry
        new_max = jnp.maximum(running_max, jnp.max(log_w, axis=0))
        total = total * jnp.exp(running_max - new_max) + jnp.sum(jnp.exp(log_w - new_max), axis=0)
        return new_max, total

    def step(carry, chunk_keys):
        return fold(carry, chunk_log_weights(chunk_keys)), None

    first = jax.eval_shape(log_weight_fn, keys[0])  # [B]
    carry = (jnp.full(first.shape, -jnp.inf, first.dtype), jnp.zeros(first.shape, first.dtype))
    if num_full == 1:  # a single chunk needs no loop
        carry = fold(carry, chunk_log_weights(keys[:chunk]))
    else:
        carry, _ = jax.lax.scan(step, carry, keys[: num_full * chunk].reshape(num_full, chunk))
    if remainder:
        carry = fold(carry, chunk_log_weights(keys[num_full * chunk :]))
    running_max, total = carry
    return running_max + jnp.log(total) - jnp.log(float(k))


def iwae_bound(
    params, x: jax.Array, key: jax.Array, *, apply_fn: Callable, likelihood: Likelihood, k: int,
    chunk: int = 100, num_levels: int | None = None,
) -> jax.Array:
    """Importance-weighted bound (Burda et al. 2016, eq. 8), per example `[B]`:

        L_k = log (1/k) sum_i p(x | z_i) p(z_i) / q(z_i | x),   z_i ~ q(z | x),

    with ELBO = E L_1 <= E L_k <= E L_{k+1} <= log p(x). Importance samples are processed
    `chunk` at a time, so k = 5000 fits in memory: peak memory is about `chunk` decoder
    outputs of the batch (a 256-level categorical decoder on `[100, 28, 28, 1]` holds 20M
    floats per sample, so use a chunk of a few there; Bernoulli takes 100 easily).
    """
    log_likelihood = resolve_likelihood(likelihood, num_levels=num_levels)
    mean, log_var = apply_fn(params, x, method="encode")  # [B, Z] each

    def log_weight(sample_key: jax.Array) -> jax.Array:  # [B]
        z = reparameterize(sample_key, mean, log_var)  # [B, Z]
        decoder_output = apply_fn(params, z, method="decode")
        return (
            log_likelihood(x, decoder_output)
            + standard_normal_log_prob(z)
            - diag_gaussian_log_prob(z, mean, log_var)
        )

    return log_mean_exp_chunked(log_weight, key, k, chunk)


def hierarchical_iwae_bound(
    params, x: jax.Array, key: jax.Array, *, apply_fn: Callable, likelihood: Likelihood, k: int,
    chunk: int = 100, num_levels: int | None = None,
) -> jax.Array:
    """Importance-weighted bound of the Markovian HVAE, per example `[B]`:

        L_k = log (1/k) sum_i p(x | z_1^i) p(z_T^i) prod_{t<T} p(z_t^i | z_{t+1}^i)
                              / (q(z_1^i | x) prod_{t>1} q(z_t^i | z_{t-1}^i)),
    z_{1:T}^i ~ q(z_{1:T} | x) ancestrally; chunked as in `iwae_bound`.
    """
    log_likelihood = resolve_likelihood(likelihood, num_levels=num_levels)
    mean_1, log_var_1 = apply_fn(params, x, method="encode")  # [B, Z] each

    def log_weight(sample_key: jax.Array) -> jax.Array:  # [B]
        zs, posteriors, priors = apply_fn(params, mean_1, log_var_1, sample_key, method="infer")
        log_w = log_likelihood(x, apply_fn(params, zs[0], method="decode"))
        for z, posterior, prior in zip(zs, posteriors, priors):
            log_w += diag_gaussian_log_prob(z, *prior) - diag_gaussian_log_prob(z, *posterior)
        return log_w

    return log_mean_exp_chunked(log_weight, key, k, chunk)


def iwae_loss(
    params, batch: dict[str, jax.Array], key: jax.Array, *, apply_fn: Callable,
    likelihood: Likelihood, k: int, chunk: int = 100, num_levels: int | None = None,
    bound: Callable = iwae_bound,
) -> tuple[jax.Array, Metrics]:
    """IWAE training loss -mean_b L_k (Burda et al. 2016); `bound` is `iwae_bound` or
    `hierarchical_iwae_bound`. Metrics: {"iwae": mean_b L_k}."""
    log_px = bound(
        params, batch["image"], key, apply_fn=apply_fn, likelihood=likelihood, k=k, chunk=chunk,
        num_levels=num_levels,
    )
    return -jnp.mean(log_px), {"iwae": jnp.mean(log_px)}
