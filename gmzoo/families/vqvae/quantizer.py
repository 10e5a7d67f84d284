"""Vector quantisation (van den Oord et al. 2017, "Neural Discrete Representation Learning",
sec. 3.1-3.2 and appendix A.1 for the EMA codebook).

Encoder outputs ``z_e [..., D]`` are snapped to the nearest of K codes ``codebook [K, D]``:

    k(z_e) = argmin_k ||z_e - e_k||^2,   z_q = e_{k(z_e)}                              (eq. 1-2)

- :func:`squared_distances` expands ||z - e_k||^2 = ||z||^2 - 2 z.e_k + ||e_k||^2 ([..., K],
  never a [..., K, D] tensor), in at least float32 [PITFALLS: bf16 distances mis-assign codes];
  :func:`nearest_code` takes its argmin, :func:`lookup` the rows.
- :func:`straight_through`: z_e + sg(z_q - z_e), equal to z_q forward with an identity Jacobian
  d z_q_st / d z_e = I, so the decoder's gradient at z_q is copied to the encoder (sec. 3.2).
- The two vector-quantisation terms of the loss (eq. 3), with sg the stop-gradient:

      codebook_loss   = ||sg[z_e] - e||^2        (moves the codes; gradient to e only)
      commitment_loss = beta ||z_e - sg[e]||^2   (keeps z_e near its code; gradient to z_e only)

  each a sum over the latent vectors of one example (the leading axis of z_e) and over D,
  averaged over that axis: per-example nats-like units, added to the reconstruction NLL per
  example. For ``z_e [N, D]`` that is the mean over the N vectors. beta = 0.25 (sec. 4.1).
- EMA codebook (appendix A.1): instead of the codebook loss, each step (train=True only)

      N_k <- decay N_k + (1 - decay) n_k,    n_k = #{i : k(z_i) = k}
      m_k <- decay m_k + (1 - decay) sum_{i : k(z_i) = k} z_i
      N~_k = (N_k + eps) / (n + K eps) * n,  n = sum_k N_k        (Laplace smoothing)
      e_k  = m_k / N~_k

  Without the smoothing an unused code's N_k decays to 0 and its e_k blows up [PITFALLS:
  zalandoresearch/pytorch-vq-vae#9, #10]. The state starts at N_k = 1, m_k = e_k (one pseudo
  count at each initial code), so e_k = m_k / N~_k holds from the first step and an unused
  code decays towards 0 only after ~log(eps) / log(decay) steps, instead of jumping to m_k / eps.
  With ``axis_name`` set, n_k and the sums are ``lax.psum``-ed over that mapped axis (``jax.vmap``
  / ``shard_map`` / ``pmap``, inside which the module must then run), so every device applies
  the update of the global batch and keeps the same codebook; the result equals the update on
  the concatenated batch for any per-device batch sizes.
- Dead-code restarts (Dhariwal et al. 2020, "Jukebox", sec. 3, "Random restarts for
  embeddings"; Williams et al. 2020), EMA codebook only: after the EMA step, every code whose
  count N_k fell below ``restart_threshold`` (N_k ~ the code's uses per batch; Jukebox uses 1.0;
  0, the default, turns restarts off) is moved onto an encoder output of the current batch,

      dead = {k : N_k < threshold},   e_k = m_k = z_{r_k},   N_k = 1     for k in dead

  (then e_k = m_k / N~_k up to the O(eps) smoothing), with r_k drawn uniformly without
  replacement from the batch (with replacement if it holds fewer than K vectors). Live codes
  keep exactly what the EMA step gave them. The draw comes from the Flax rng stream
  ``"restart"`` (apply with ``rngs={"restart": key}``): a random draw spreads the restarted
  codes over the data, where a deterministic rule (the first rows, or the vectors farthest
  from their codes) would pile them onto a few rows or onto outliers. With ``axis_name``, r_k
  indexes the GLOBAL batch (devices in axis order), device 0's draw is used on every device
  and only the K chosen rows are ``all_gather``-ed ([devices, K, D]), so every device restarts
  the same codes to the same vectors, as one device would on the concatenated batch, even if
  the caller's keys differ per device. With ``update="loss"`` the codebook is a param that the
  optimizer owns (with its moments), so a restart cannot be written there: refused.
- Code usage: counts ``[K]`` over the batch (global with ``axis_name``), perplexity
  exp(H(p)), p_k = n_k / N (K when codes are used uniformly, 1 when one code is used), and the
  fraction of codes used. Both depend on the batch size: accumulate ``code_counts`` over an
  epoch for the codebook usage of a run [PITFALLS: bshall/VectorQuantizedVAE#3].

:class:`VectorQuantizer` is the Linen module, ``update="loss"`` (codebook a param named
``"codebook"``) or ``update="ema"`` (codebook, ``cluster_size`` N_k and ``embed_sum`` m_k in the
mutable collection ``"vq_state"``), optionally with dead-code restarts.
"""

from __future__ import annotations

import math
import numbers

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

VQ_STATE = "vq_state"  # the Flax collection of the EMA codebook
RESTART_RNG = "restart"  # the Flax rng stream of the dead-code restarts
UPDATES = ("loss", "ema")


def _check_codebook(z: jax.Array, codebook: jax.Array) -> None:
    if codebook.ndim != 2:
        raise ValueError(f"codebook must be [K, D], got shape {tuple(codebook.shape)}")
    if z.shape[-1:] != codebook.shape[-1:]:
        raise ValueError(f"z_e's last axis must be the code dimension D={codebook.shape[-1]}, "
                         f"got z_e of shape {tuple(z.shape)}")


def squared_distances(z: jax.Array, codebook: jax.Array) -> jax.Array:
    """||z - e_k||^2 = ||z||^2 - 2 z.e_k + ||e_k||^2 for ``z [..., D]``, ``codebook [K, D]``:
    ``[..., K]``, in float32 (float64 if either input is)."""
    _check_codebook(z, codebook)
    dtype = jnp.promote_types(jnp.promote_types(z.dtype, codebook.dtype), jnp.float32)
    z, e = z.astype(dtype), codebook.astype(dtype)
    z2 = jnp.sum(jnp.square(z), axis=-1, keepdims=True)  # [..., 1]
    e2 = jnp.sum(jnp.square(e), axis=-1)  # [K]
    ze = jnp.einsum("...d,kd->...k", z, e, precision=lax.Precision.HIGHEST)  # [..., K]
    return z2 - 2.0 * ze + e2


def nearest_code(z: jax.Array, codebook: jax.Array) -> jax.Array:
    """k(z) = argmin_k ||z - e_k||^2 (eq. 1): ``[..., D] -> [...]`` int32 codes in [0, K)."""
    return jnp.argmin(squared_distances(z, codebook), axis=-1).astype(jnp.int32)


def lookup(codes: jax.Array, codebook: jax.Array) -> jax.Array:
    """e_{codes}: ``[...]`` integer codes -> ``[..., D]`` (differentiable in the codebook)."""
    return jnp.take(codebook, codes, axis=0)


def straight_through(z_e: jax.Array, z_q: jax.Array) -> jax.Array:
    """z_e + sg(z_q - z_e): z_q forward, identity Jacobian w.r.t. z_e backward (sec. 3.2)."""
    return z_e + lax.stop_gradient(z_q - z_e)


def _per_example(sq: jax.Array) -> jax.Array:
    """Sum of ``sq [B, ..., D]`` over everything but the leading axis, mean over it: scalar."""
    return jnp.sum(sq) / sq.shape[0]


def codebook_loss(z_e: jax.Array, z_q: jax.Array) -> jax.Array:
    """||sg[z_e] - e||^2 per example (eq. 3, second term): gradient to the codes only."""
    return _per_example(jnp.square(lax.stop_gradient(z_e) - z_q))


def commitment_loss(z_e: jax.Array, z_q: jax.Array, beta: float) -> jax.Array:
    """beta ||z_e - sg[e]||^2 per example (eq. 3, third term): gradient to z_e only."""
    return beta * _per_example(jnp.square(z_e - lax.stop_gradient(z_q)))


def code_counts(codes: jax.Array, num_codes: int, axis_name: str | None = None) -> jax.Array:
    """n_k, how many of ``codes [...]`` equal k: ``[K]`` float32, summed over ``axis_name``."""
    counts = jnp.zeros((num_codes,), jnp.float32).at[codes.reshape(-1)].add(1.0)
    return counts if axis_name is None else lax.psum(counts, axis_name)


def perplexity(counts: jax.Array) -> jax.Array:
    """exp(H(p)) with p_k = n_k / sum(n) and 0 log 0 = 0: K for uniform usage, 1 for one code."""
    p = counts / jnp.maximum(jnp.sum(counts), 1.0)
    return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)))


def laplace_smooth(cluster_size: jax.Array, eps: float) -> jax.Array:
    """N~_k = (N_k + eps) / (n + K eps) * n, n = sum_k N_k: no count reaches 0, the total is n."""
    n = jnp.sum(cluster_size)
    return (cluster_size + eps) / (n + cluster_size.shape[0] * eps) * n


def ema_update(cluster_size: jax.Array, embed_sum: jax.Array, z: jax.Array, codes: jax.Array,
               *, decay: float, eps: float, axis_name: str | None = None
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One EMA codebook step (appendix A.1, module docstring) from ``z [..., D]`` and their
    ``codes [...]``: ``(cluster_size [K], embed_sum [K, D], codebook [K, D])``. With
    ``axis_name`` the batch statistics are summed over that mapped axis first."""
    num_codes, dim = embed_sum.shape
    z = lax.stop_gradient(z).reshape(-1, dim).astype(jnp.float32)  # [N, D]
    one_hot = jax.nn.one_hot(codes.reshape(-1), num_codes, dtype=jnp.float32)  # [N, K]
    counts = jnp.sum(one_hot, axis=0)  # [K]   n_k
    sums = jnp.einsum("nk,nd->kd", one_hot, z, precision=lax.Precision.HIGHEST)  # [K, D]
    if axis_name is not None:
        counts, sums = lax.psum((counts, sums), axis_name)
    cluster_size = decay * cluster_size + (1.0 - decay) * counts
    embed_sum = decay * embed_sum + (1.0 - decay) * sums
    codebook = embed_sum / laplace_smooth(cluster_size, eps)[:, None]
    return cluster_size, embed_sum, codebook


def restart_dead_codes(cluster_size: jax.Array, embed_sum: jax.Array, codebook: jax.Array,
                       z: jax.Array, key: jax.Array, *, threshold: float,
                       axis_name: str | None = None
                       ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Dead-code restart (module docstring) after an EMA step: codes with ``cluster_size`` N_k <
    ``threshold`` get e_k = m_k = a row of ``z [..., D]`` drawn with ``key`` and N_k = 1.
    Returns ``(cluster_size [K], embed_sum [K, D], codebook [K, D], dead [K] bool)``. With
    ``axis_name`` the rows are drawn from the global batch, the same on every device."""
    num_codes, dim = codebook.shape
    z = lax.stop_gradient(z).reshape(-1, dim).astype(codebook.dtype)  # [n, D] this device's
    n_local = z.shape[0]
    n_global = n_local * (1 if axis_name is None else lax.axis_size(axis_name))
    if n_global >= num_codes:  # distinct rows: two codes restarted together stay distinct
        rows = jax.random.choice(key, n_global, (num_codes,), replace=False)  # [K]
    else:
        rows = jax.random.randint(key, (num_codes,), 0, n_global)  # [K]
    if axis_name is None:
        candidates = z[rows]  # [K, D]
    else:
        rows = lax.all_gather(rows, axis_name)[0]  # device 0's draw on every device
        device, local = jnp.divmod(rows, n_local)  # global row = device * n + local
        gathered = lax.all_gather(z[local], axis_name)  # [devices, K, D]
        candidates = gathered[device, jnp.arange(num_codes)]  # [K, D]
    dead = cluster_size < threshold  # [K]
    cluster_size = jnp.where(dead, jnp.ones_like(cluster_size), cluster_size)
    embed_sum = jnp.where(dead[:, None], candidates, embed_sum)
    codebook = jnp.where(dead[:, None], candidates, codebook)
    return cluster_size, embed_sum, codebook, dead


def codebook_init(dim: int) -> nn.initializers.Initializer:
    """U(-sqrt(3/D), sqrt(3/D)) per entry of ``[K, D]`` (variance 1/D: codes of norm ~1)."""
    return nn.initializers.variance_scaling(1.0, "fan_in", "uniform", in_axis=-1, out_axis=-2)


def quantizer_fields_error(num_codes: int, code_dim: int, beta: float, update: str,
                           decay: float, eps: float, restart_threshold: float = 0.0
                           ) -> str | None:
    """Why these :class:`VectorQuantizer` fields are refused, or None."""
    if not isinstance(num_codes, numbers.Integral) or num_codes < 2:
        return (f"num_codes must be an integer >= 2 (a codebook of one code carries no "
                f"information), got {num_codes!r}")
    if not isinstance(code_dim, numbers.Integral) or code_dim < 1:
        return f"code_dim must be a positive integer, got {code_dim!r}"
    if not (isinstance(beta, numbers.Real) and math.isfinite(beta) and beta >= 0):
        return f"beta (commitment weight) must be a finite number >= 0, e.g. 0.25, got {beta!r}"
    if update not in UPDATES:
        return f"update={update!r}; choose one of {UPDATES}"
    if not 0.0 < decay < 1.0:
        return f"decay must be in (0, 1), e.g. 0.99, got {decay!r}"
    if not eps > 0:
        return f"eps (Laplace smoothing) must be > 0, e.g. 1e-5, got {eps!r}"
    if not (isinstance(restart_threshold, numbers.Real) and math.isfinite(restart_threshold)
            and restart_threshold >= 0):
        return (f"restart_threshold must be a finite number >= 0 (0 = no dead-code restarts, "
                f"e.g. 1.0), got {restart_threshold!r}")
    if restart_threshold > 0 and update != "ema":
        return (f"restart_threshold={restart_threshold!r} needs update='ema' (with update="
                f"{update!r} the codebook is a param the optimizer owns); use update='ema' or 0")
    return None


class VectorQuantizer(nn.Module):
    """Nearest-code quantiser with the straight-through estimator (module docstring).

    ``__call__(z_e [..., D], train) -> (z_q_st [..., D], aux)``, aux holding ``codes [...]``
    int32, ``codebook_loss`` (0 with ``update="ema"``), ``commitment_loss`` (with beta),
    ``perplexity``, ``code_usage`` (fraction of the K codes used in the batch) and
    ``code_counts [K]``, and ``restarted`` (int32, the number of codes restarted by this call).
    ``update="ema"`` updates the ``"vq_state"`` collection when ``train=True`` (pass
    ``mutable=["vq_state"]``, and with ``restart_threshold > 0`` also ``rngs={"restart": key}``);
    ``init`` never updates it. ``axis_name``: see the module docstring.
    """

    num_codes: int
    code_dim: int
    beta: float = 0.25
    update: str = "loss"  # or "ema"
    decay: float = 0.99
    eps: float = 1e-5
    axis_name: str | None = None
    restart_threshold: float = 0.0  # EMA count N_k below which a code is restarted; 0 = never

    def __post_init__(self) -> None:
        error = quantizer_fields_error(self.num_codes, self.code_dim, self.beta, self.update,
                                       self.decay, self.eps, self.restart_threshold)
        if error is not None:
            raise ValueError(error)
        super().__post_init__()

    def setup(self) -> None:
        shape, init = (self.num_codes, self.code_dim), codebook_init(self.code_dim)
        if self.update == "loss":
            self._codebook = self.param("codebook", init, shape)  # [K, D]
        else:
            codebook = self.variable(VQ_STATE, "codebook",
                                     lambda: init(self.make_rng("params"), shape))  # [K, D]
            self._ema_codebook = codebook
            self._cluster_size = self.variable(VQ_STATE, "cluster_size", jnp.ones,
                                               (self.num_codes,), jnp.float32)  # [K]  N_k
            self._embed_sum = self.variable(VQ_STATE, "embed_sum",
                                            lambda: jnp.copy(codebook.value))  # [K, D]  m_k

    def codebook(self) -> jax.Array:
        """The codes ``[K, D]`` (for ``update="ema"``, as of the last update)."""
        return self._codebook if self.update == "loss" else self._ema_codebook.value

    def quantize(self, z_e: jax.Array) -> jax.Array:
        """``z_e [..., D] -> codes [...]`` int32, the nearest codes."""
        self._check_input(z_e)
        return nearest_code(z_e, self.codebook())

    def embed(self, codes: jax.Array) -> jax.Array:
        """``codes [...] -> z_q [..., D]``, the code vectors."""
        return lookup(codes, self.codebook())

    def _check_input(self, z_e: jax.Array) -> None:
        if z_e.ndim < 2 or z_e.shape[-1] != self.code_dim:
            raise ValueError(f"VectorQuantizer takes z_e [B, ..., D] with D = code_dim = "
                             f"{self.code_dim}, got shape {tuple(z_e.shape)}")

    def __call__(self, z_e: jax.Array, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        self._check_input(z_e)
        update_ema = train and self.update == "ema" and not self.is_initializing()
        if update_ema and not self.is_mutable_collection(VQ_STATE):
            raise ValueError(f"update='ema' with train=True updates the codebook: apply with "
                             f"mutable=[{VQ_STATE!r}] (or train=False)")
        restart = update_ema and self.restart_threshold > 0
        if restart and not self.has_rng(RESTART_RNG):
            raise ValueError(f"restart_threshold={self.restart_threshold} with train=True draws "
                             f"restarted codes from the batch: apply with "
                             f"rngs={{{RESTART_RNG!r}: key}} (or restart_threshold=0)")
        codebook = self.codebook()  # [K, D]
        codes = nearest_code(z_e, codebook)  # [...]
        z_q = lookup(codes, codebook).astype(z_e.dtype)  # [..., D]
        counts = code_counts(codes, self.num_codes, self.axis_name)  # [K]
        aux = {
            "codes": codes,
            "codebook_loss": (codebook_loss(z_e, z_q) if self.update == "loss"
                              else jnp.zeros((), jnp.float32)),
            "commitment_loss": commitment_loss(z_e, z_q, self.beta),
            "perplexity": perplexity(counts),
            "code_usage": jnp.mean(counts > 0),
            "code_counts": counts,
            "restarted": jnp.zeros((), jnp.int32),
        }
        if update_ema:
            cluster_size, embed_sum, new_codebook = ema_update(
                self._cluster_size.value, self._embed_sum.value, z_e, codes, decay=self.decay,
                eps=self.eps, axis_name=self.axis_name)
            if restart:
                cluster_size, embed_sum, new_codebook, dead = restart_dead_codes(
                    cluster_size, embed_sum, new_codebook, z_e, self.make_rng(RESTART_RNG),
                    threshold=self.restart_threshold, axis_name=self.axis_name)
                aux["restarted"] = jnp.sum(dead, dtype=jnp.int32)
            self._cluster_size.value = cluster_size
            self._embed_sum.value = embed_sum
            self._ema_codebook.value = new_codebook
        return straight_through(z_e, z_q), aux
