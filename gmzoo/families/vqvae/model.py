"""The conv VQ-VAE (van den Oord et al. 2017) and its loss (eq. 3).

    x [B, H, W, C] --encoder--> z_e [B, h, w, D] --quantizer--> z_q [B, h, w, D]
                   --decoder--> recon [B, H, W, C]        (h, w) = (H, W) / downsample

- Encoder: gmzoo's :class:`~gmzoo.nn.conv.ConvEncoder` (log2(downsample) stride-2 3x3 convs of
  ``hidden`` channels with ReLU; it flattens its grid, which is reshaped back to
  ``[B, h, w, hidden]``), then a 1x1 conv to the code dimension D.
- Quantizer: :class:`~gmzoo.families.vqvae.quantizer.VectorQuantizer` (codebook learned by the
  loss or by EMA, straight-through gradient to the encoder).
- Decoder: a 3x3 conv from D to ``hidden`` channels, log2(downsample) :class:`~gmzoo.nn.conv.UpConv`
  (the stride-2 transposed conv of gmzoo's conv decoders) with ReLU, and a 3x3 conv head to C
  channels. (:class:`~gmzoo.nn.conv.ConvDecoder` starts from a dense layer on a flat vector;
  a code map needs the spatial start.) ``recon`` is Bernoulli logits or a Gaussian mean, as the
  loss reads it.

``encode(x) -> codes [B, h, w]`` (int32 in [0, K)) and ``decode_codes(codes) -> recon`` let a
second-stage prior model the codes as a ``[B, h, w, 1]`` image with K levels.

:func:`vqvae_loss` (eq. 3, per example, averaged over the batch; nats):

    loss = -log p(x | z_q) + ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2

with -log p(x | z_q) from :mod:`gmzoo.losses.likelihoods`: "bernoulli" (binarized x, recon the
logits) or "gaussian" (x in [0, 1], recon the mean, a fixed scale exp(log_scale): the
squared error / (2 scale^2) plus a constant). With the EMA codebook the second term is 0.
"""

from __future__ import annotations

import math
import numbers

import flax.linen as nn
import jax
import jax.numpy as jnp

from gmzoo.families.vqvae.quantizer import VectorQuantizer, quantizer_fields_error
from gmzoo.losses.likelihoods import resolve_likelihood
from gmzoo.nn.conv import ConvEncoder, UpConv, conv_image_shape_error

VQVAE_LIKELIHOODS = ("bernoulli", "gaussian")


class VQVAE(nn.Module):
    """Conv VQ-VAE (module docstring). ``__call__(x, train) -> (recon [B, H, W, C], aux)`` with
    the quantizer's aux (codes, codebook/commitment losses, perplexity, usage); with
    ``update="ema"`` and ``train=True`` apply with ``mutable=["vq_state"]``."""

    image_shape: tuple[int, int, int]
    num_codes: int = 512
    code_dim: int = 64
    downsample: int = 4  # 2 ** (stride-2 stages): 28x28 -> 7x7
    hidden: int = 64  # channels of every conv stage
    beta: float = 0.25
    update: str = "loss"  # or "ema"
    decay: float = 0.99
    eps: float = 1e-5  # Laplace smoothing of the EMA counts
    axis_name: str | None = None

    def __post_init__(self) -> None:
        if (not isinstance(self.downsample, numbers.Integral) or self.downsample < 2
                or self.downsample & (self.downsample - 1)):
            raise ValueError(f"downsample must be a power of two >= 2 (2 or 4: 28x28 -> 14x14 or "
                             f"7x7), got {self.downsample!r}")
        error = conv_image_shape_error(tuple(self.image_shape), self.num_stages)
        if error is not None:
            raise ValueError(f"VQVAE with downsample={self.downsample}: {error}")
        if not isinstance(self.hidden, numbers.Integral) or self.hidden < 1:
            raise ValueError(f"hidden must be a positive integer, got {self.hidden!r}")
        error = quantizer_fields_error(self.num_codes, self.code_dim, self.beta, self.update,
                                       self.decay, self.eps)
        if error is not None:
            raise ValueError(error)
        super().__post_init__()

    @property
    def num_stages(self) -> int:
        return int(math.log2(self.downsample))

    @property
    def latent_shape(self) -> tuple[int, int]:
        """(h, w) of the code map."""
        return self.image_shape[0] // self.downsample, self.image_shape[1] // self.downsample

    def setup(self) -> None:
        self.encoder = ConvEncoder((self.hidden,) * self.num_stages)
        self.to_codes = nn.Conv(self.code_dim, (1, 1))
        self.quantizer = VectorQuantizer(self.num_codes, self.code_dim, beta=self.beta,
                                         update=self.update, decay=self.decay, eps=self.eps,
                                         axis_name=self.axis_name)
        self.from_codes = nn.Conv(self.hidden, (3, 3), padding="SAME")
        self.ups = [UpConv(self.hidden, name=f"deconv_{i}") for i in range(self.num_stages)]
        self.head = nn.Conv(self.image_shape[-1], (3, 3), padding="SAME")

    def _check_image(self, x: jax.Array) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.image_shape):
            height, width, channels = self.image_shape
            raise ValueError(f"VQVAE takes images [B, H, W, C] = [B, {height}, {width}, "
                             f"{channels}], got shape {tuple(x.shape)}")

    def encode_continuous(self, x: jax.Array) -> jax.Array:
        """``x [B, H, W, C] -> z_e [B, h, w, D]``, before quantisation."""
        self._check_image(x)
        h, w = self.latent_shape
        feats = self.encoder(x).reshape(x.shape[0], h, w, self.hidden)  # [B, h, w, F]
        return self.to_codes(feats)  # [B, h, w, D]

    def encode(self, x: jax.Array) -> jax.Array:
        """``x [B, H, W, C] -> codes [B, h, w]`` int32 in [0, K)."""
        return self.quantizer.quantize(self.encode_continuous(x))

    def decode(self, z_q: jax.Array) -> jax.Array:
        """``z_q [B, h, w, D] -> recon [B, H, W, C]`` (logits or mean)."""
        h = nn.relu(self.from_codes(z_q))  # [B, h, w, F]
        for up in self.ups:
            h = nn.relu(up(h))  # doubles H and W
        return self.head(h)  # [B, H, W, C]

    def decode_codes(self, codes: jax.Array) -> jax.Array:
        """``codes [B, h, w]`` integers -> recon ``[B, H, W, C]``."""
        if codes.ndim != 3 or tuple(codes.shape[1:]) != self.latent_shape:
            raise ValueError(f"decode_codes takes codes [B, h, w] = [B, {self.latent_shape[0]}, "
                             f"{self.latent_shape[1]}], got shape {tuple(codes.shape)}")
        return self.decode(self.quantizer.embed(codes))

    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        z_q, aux = self.quantizer(self.encode_continuous(x), train)  # z_q straight-through
        return self.decode(z_q), aux


def vqvae_loss(recon: jax.Array, x: jax.Array, aux: dict[str, jax.Array],
               likelihood: str = "bernoulli", *, log_scale: float = 0.0
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """VQ-VAE loss (eq. 3, module docstring): ``(loss, metrics)``, per example in nats.

    ``recon [B, H, W, C]``: logits ("bernoulli", x in {0, 1}) or mean ("gaussian", N(x; recon,
    exp(log_scale)^2)); ``aux``: the quantizer's. metrics: loss, recon_nll, codebook_loss,
    commitment_loss, perplexity, code_usage.
    """
    if likelihood not in VQVAE_LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {VQVAE_LIKELIHOODS}, got {likelihood!r}")
    if recon.shape != x.shape:
        raise ValueError(f"recon and x must have the same shape [B, H, W, C], got "
                         f"{tuple(recon.shape)} and {tuple(x.shape)}")
    log_p = resolve_likelihood(likelihood)
    params = recon if likelihood == "bernoulli" else (recon, jnp.full_like(recon, log_scale))
    recon_nll = -jnp.mean(log_p(x, params))  # [] nats per example
    loss = recon_nll + aux["codebook_loss"] + aux["commitment_loss"]
    metrics = {"loss": loss, "recon_nll": recon_nll}
    metrics.update({k: aux[k] for k in ("codebook_loss", "commitment_loss", "perplexity",
                                        "code_usage")})
    return loss, metrics
