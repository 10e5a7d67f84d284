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

:class:`VQVAE2` (Razavi et al. 2019, "Generating Diverse High-Fidelity Images with VQ-VAE-2",
sec. 3.1, fig. 2a, algorithm 1; wired as rosinality/vq-vae-2-pytorch ``vqvae.py``) has two
levels of codes, each with its own codebook of K codes:

    h_b        = E_bottom(x)                             [B, hb, wb, F]  H / bottom_downsample
    z_e_top    = 1x1 conv(E_top(h_b))                    [B, ht, wt, D]  hb / top_downsample
    z_q_top    = Quantize_top(z_e_top)                   [B, ht, wt, D]
    z_e_bottom = 1x1 conv(concat(h_b, D_top(z_q_top)))   [B, hb, wb, D]  D_top: ht -> hb
    z_q_bottom = Quantize_bottom(z_e_bottom)             [B, hb, wb, D]
    recon      = D(concat(z_q_bottom, U(z_q_top)))       [B, H, W, C]    U: ht -> hb

E_bottom and E_top are :class:`~gmzoo.nn.conv.ConvEncoder` stacks, D_top and D the VQVAE's
decoder (:class:`CodeDecoder`), U a stack of :class:`~gmzoo.nn.conv.UpConv` (a separate learned
upsampling, as rosinality's ``upsample_t``). The top codes carry the global structure, the
bottom codes the local detail conditioned on it; the straight-through gradient reaches E_top
both through U and through D_top. mnist5k 28x28 with the default downsamples 2 and 2: bottom
14x14, top 7x7; the 8x8 digits: 4x4 and 2x2. Its loss is the same :func:`vqvae_loss`, with the
codebook and commitment terms summed over the two levels.

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


def _downsample_error(name: str, value: int) -> str | None:
    """Why ``value`` is refused as a downsampling factor (a power of two >= 2), or None."""
    if not isinstance(value, numbers.Integral) or value < 2 or value & (value - 1):
        return (f"{name} must be a power of two >= 2 (2 or 4: 28x28 -> 14x14 or 7x7), "
                f"got {value!r}")
    return None


def _hidden_error(hidden: int) -> str | None:
    if not isinstance(hidden, numbers.Integral) or hidden < 1:
        return f"hidden must be a positive integer, got {hidden!r}"
    return None


def _conv_features(encoder: ConvEncoder, x: jax.Array) -> jax.Array:
    """``x [B, H, W, C] -> [B, H / 2^n, W / 2^n, F]``: a :class:`ConvEncoder` of n stages with
    its flattened output put back on the grid (F = its last ``features``)."""
    factor = 2 ** len(encoder.features)
    return encoder(x).reshape(x.shape[0], x.shape[1] // factor, x.shape[2] // factor,
                              encoder.features[-1])


def _fields_error(model: nn.Module) -> str | None:
    """Why a VQ-VAE's width and quantizer fields are refused, or None."""
    return _hidden_error(model.hidden) or quantizer_fields_error(
        model.num_codes, model.code_dim, model.beta, model.update, model.decay, model.eps,
        model.restart_threshold)


def _check_images(name: str, x: jax.Array, image_shape: tuple[int, int, int]) -> None:
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(image_shape):
        height, width, channels = image_shape
        raise ValueError(f"{name} takes images [B, H, W, C] = [B, {height}, {width}, "
                         f"{channels}], got shape {tuple(x.shape)}")


def _check_codes(name: str, codes: jax.Array, shape: tuple[int, int]) -> None:
    if codes.ndim != 3 or tuple(codes.shape[1:]) != tuple(shape):
        raise ValueError(f"{name} takes codes [B, h, w] = [B, {shape[0]}, {shape[1]}], got "
                         f"shape {tuple(codes.shape)}")


class CodeDecoder(nn.Module):
    """The VQ-VAE decoder from a code map: ``[B, h, w, D_in] -> [B, h 2^n, w 2^n, out]`` by a 3x3
    conv to ``hidden`` channels, ReLU, n :class:`~gmzoo.nn.conv.UpConv` (each doubling H and W)
    with ReLU, and a 3x3 conv head (no activation). (:class:`~gmzoo.nn.conv.ConvDecoder` starts
    from a dense layer on a flat vector; a code map needs the spatial start.)"""

    hidden: int
    num_stages: int
    out_channels: int

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        h = nn.relu(nn.Conv(self.hidden, (3, 3), padding="SAME", name="from_codes")(z))
        for i in range(self.num_stages):
            h = nn.relu(UpConv(self.hidden, name=f"deconv_{i}")(h))  # doubles H and W
        return nn.Conv(self.out_channels, (3, 3), padding="SAME", name="head")(h)


class VQVAE(nn.Module):
    """Conv VQ-VAE (module docstring). ``__call__(x, train) -> (recon [B, H, W, C], aux)`` with
    the quantizer's aux (codes, codebook/commitment losses, perplexity, usage, restarted); with
    ``update="ema"`` and ``train=True`` apply with ``mutable=["vq_state"]`` (and with
    ``restart_threshold > 0`` with ``rngs={"restart": key}``)."""

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
    restart_threshold: float = 0.0  # EMA count below which a code is restarted (EMA only)

    def __post_init__(self) -> None:
        error = _downsample_error("downsample", self.downsample)
        if error is not None:
            raise ValueError(error)
        error = conv_image_shape_error(tuple(self.image_shape), self.num_stages)
        if error is not None:
            raise ValueError(f"VQVAE with downsample={self.downsample}: {error}")
        error = _fields_error(self)
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
        self.quantizer = _quantizer(self)
        self.decoder = CodeDecoder(self.hidden, self.num_stages, self.image_shape[-1])

    def encode_continuous(self, x: jax.Array) -> jax.Array:
        """``x [B, H, W, C] -> z_e [B, h, w, D]``, before quantisation."""
        _check_images("VQVAE", x, self.image_shape)
        return self.to_codes(_conv_features(self.encoder, x))  # [B, h, w, D]

    def encode(self, x: jax.Array) -> jax.Array:
        """``x [B, H, W, C] -> codes [B, h, w]`` int32 in [0, K)."""
        return self.quantizer.quantize(self.encode_continuous(x))

    def decode(self, z_q: jax.Array) -> jax.Array:
        """``z_q [B, h, w, D] -> recon [B, H, W, C]`` (logits or mean)."""
        return self.decoder(z_q)

    def decode_codes(self, codes: jax.Array) -> jax.Array:
        """``codes [B, h, w]`` integers -> recon ``[B, H, W, C]``."""
        _check_codes("decode_codes", codes, self.latent_shape)
        return self.decode(self.quantizer.embed(codes))

    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        z_q, aux = self.quantizer(self.encode_continuous(x), train)  # z_q straight-through
        return self.decode(z_q), aux


def _quantizer(model: nn.Module) -> VectorQuantizer:
    """A :class:`VectorQuantizer` with the quantizer fields of ``model`` (VQVAE or VQVAE2)."""
    return VectorQuantizer(model.num_codes, model.code_dim, beta=model.beta, update=model.update,
                           decay=model.decay, eps=model.eps, axis_name=model.axis_name,
                           restart_threshold=model.restart_threshold)


class VQVAE2(nn.Module):
    """Two-level VQ-VAE-2 (module docstring). ``__call__(x, train) -> (recon [B, H, W, C], aux)``:
    aux holds each level's quantizer aux under the prefixes ``"top_"`` and ``"bottom_"``
    (``top_codes [B, ht, wt]``, ``bottom_codes [B, hb, wb]``, ...), and the keys
    :func:`vqvae_loss` reads: ``codebook_loss`` and ``commitment_loss`` summed over the levels,
    ``perplexity`` and ``code_usage`` averaged over them (usage: the fraction of all 2K codes
    used), ``restarted`` summed. With ``update="ema"`` and ``train=True`` apply with
    ``mutable=["vq_state"]`` (and with ``restart_threshold > 0`` with
    ``rngs={"restart": key}``)."""

    image_shape: tuple[int, int, int]
    num_codes: int = 512  # K of each level's codebook
    code_dim: int = 64
    bottom_downsample: int = 2  # x -> h_b: 28x28 -> 14x14
    top_downsample: int = 2  # h_b -> top codes: 14x14 -> 7x7
    hidden: int = 64  # channels of every conv stage
    beta: float = 0.25
    update: str = "loss"  # or "ema"
    decay: float = 0.99
    eps: float = 1e-5  # Laplace smoothing of the EMA counts
    axis_name: str | None = None
    restart_threshold: float = 0.0  # EMA count below which a code is restarted (EMA only)

    def __post_init__(self) -> None:
        error = (_downsample_error("bottom_downsample", self.bottom_downsample)
                 or _downsample_error("top_downsample", self.top_downsample))
        if error is not None:
            raise ValueError(error)
        error = conv_image_shape_error(tuple(self.image_shape),
                                       self.bottom_stages + self.top_stages)
        if error is not None:
            raise ValueError(f"VQVAE2 with bottom_downsample={self.bottom_downsample} and "
                             f"top_downsample={self.top_downsample}: {error}")
        error = _fields_error(self)
        if error is not None:
            raise ValueError(error)
        super().__post_init__()

    @property
    def bottom_stages(self) -> int:
        return int(math.log2(self.bottom_downsample))

    @property
    def top_stages(self) -> int:
        return int(math.log2(self.top_downsample))

    @property
    def latent_shapes(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """((ht, wt), (hb, wb)): the top and the bottom code maps."""
        hb, wb = (d // self.bottom_downsample for d in self.image_shape[:2])
        return (hb // self.top_downsample, wb // self.top_downsample), (hb, wb)

    def setup(self) -> None:
        code_dim, hidden = self.code_dim, self.hidden
        self.bottom_encoder = ConvEncoder((hidden,) * self.bottom_stages)
        self.top_encoder = ConvEncoder((hidden,) * self.top_stages)
        self.to_top_codes = nn.Conv(code_dim, (1, 1))
        self.top_quantizer = _quantizer(self)
        self.top_decoder = CodeDecoder(hidden, self.top_stages, code_dim)
        self.to_bottom_codes = nn.Conv(code_dim, (1, 1))
        self.bottom_quantizer = _quantizer(self)
        self.top_upsample = [UpConv(code_dim, name=f"top_upsample_{i}")
                             for i in range(self.top_stages)]
        self.decoder = CodeDecoder(hidden, self.bottom_stages, self.image_shape[-1])

    def _bottom_features(self, x: jax.Array) -> jax.Array:
        """``x [B, H, W, C] -> h_b [B, hb, wb, F]``."""
        _check_images("VQVAE2", x, self.image_shape)
        return _conv_features(self.bottom_encoder, x)

    def _top_latent(self, h_b: jax.Array) -> jax.Array:
        """``h_b -> z_e_top [B, ht, wt, D]``."""
        return self.to_top_codes(_conv_features(self.top_encoder, h_b))

    def _bottom_latent(self, h_b: jax.Array, z_q_top: jax.Array) -> jax.Array:
        """``h_b, z_q_top -> z_e_bottom [B, hb, wb, D]`` = 1x1 conv(concat(h_b, D_top(z_q_top)))."""
        return self.to_bottom_codes(jnp.concatenate([h_b, self.top_decoder(z_q_top)], axis=-1))

    def decode(self, z_q_top: jax.Array, z_q_bottom: jax.Array) -> jax.Array:
        """``z_q_top [B, ht, wt, D], z_q_bottom [B, hb, wb, D] -> recon [B, H, W, C]``."""
        up = z_q_top
        for i, layer in enumerate(self.top_upsample):
            up = layer(up) if i == 0 else layer(nn.relu(up))  # [B, hb, wb, D] at the end
        return self.decoder(jnp.concatenate([z_q_bottom, up], axis=-1))

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``x [B, H, W, C] -> (top_codes [B, ht, wt], bottom_codes [B, hb, wb])`` int32."""
        h_b = self._bottom_features(x)
        top_codes = self.top_quantizer.quantize(self._top_latent(h_b))
        z_q_top = self.top_quantizer.embed(top_codes)
        return top_codes, self.bottom_quantizer.quantize(self._bottom_latent(h_b, z_q_top))

    def decode_codes(self, top_codes: jax.Array, bottom_codes: jax.Array) -> jax.Array:
        """``top_codes [B, ht, wt]``, ``bottom_codes [B, hb, wb]`` integers -> ``[B, H, W, C]``."""
        top_shape, bottom_shape = self.latent_shapes
        _check_codes("decode_codes (top_codes)", top_codes, top_shape)
        _check_codes("decode_codes (bottom_codes)", bottom_codes, bottom_shape)
        if top_codes.shape[0] != bottom_codes.shape[0]:
            raise ValueError(f"decode_codes takes top and bottom codes of one batch, got batch "
                             f"sizes {top_codes.shape[0]} and {bottom_codes.shape[0]}")
        return self.decode(self.top_quantizer.embed(top_codes),
                           self.bottom_quantizer.embed(bottom_codes))

    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        h_b = self._bottom_features(x)
        z_q_top, aux_top = self.top_quantizer(self._top_latent(h_b), train)  # straight-through
        z_q_bottom, aux_bottom = self.bottom_quantizer(self._bottom_latent(h_b, z_q_top), train)
        aux = {f"top_{k}": v for k, v in aux_top.items()}
        aux.update({f"bottom_{k}": v for k, v in aux_bottom.items()})
        for key in ("codebook_loss", "commitment_loss", "restarted"):
            aux[key] = aux_top[key] + aux_bottom[key]
        for key in ("perplexity", "code_usage"):
            aux[key] = 0.5 * (aux_top[key] + aux_bottom[key])
        return self.decode(z_q_top, z_q_bottom), aux


def vqvae_loss(recon: jax.Array, x: jax.Array, aux: dict[str, jax.Array],
               likelihood: str = "bernoulli", *, log_scale: float = 0.0
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """VQ-VAE loss (eq. 3, module docstring): ``(loss, metrics)``, per example in nats.

    ``recon [B, H, W, C]``: logits ("bernoulli", x in {0, 1}) or mean ("gaussian", N(x; recon,
    exp(log_scale)^2)); ``aux``: the model's (:class:`VQVAE` or :class:`VQVAE2`). metrics: loss,
    recon_nll, codebook_loss, commitment_loss, perplexity, code_usage.
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
