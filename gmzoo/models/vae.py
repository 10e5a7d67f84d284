"""Autoencoder, VAE and Markovian hierarchical VAE (architectures only; losses in gmzoo.losses).

Images are `[B, H, W, C]` floats already transformed by the caller (binarized, scaled to
[-1, 1], or integer levels, to match the likelihood). Every model is configured by typed fields:

- `image_shape` `(H, W, C)`, `latent_dim` (width of each stochastic layer),
- `architecture`: "mlp" (`hidden` = dense widths) or "conv" (`hidden` = channels of the
  stride-2 conv stages; H and W must be divisible by `2 ** len(hidden)`),
- `likelihood`: "bernoulli" | "gaussian" | "discretized_logistic" | "categorical" (with
  `num_levels`), which fixes what `decode` returns (table in `gmzoo.nn.heads`).

Shapes are checked when the module is constructed: `ConvVAE(image_shape=(10, 10, 1), ...)`
raises a one-line ValueError naming the shapes the architecture takes, before any compute.
`validate_image_shape(image_shape, architecture=..., hidden=...)` runs the same check without
building a model (the CLI can call either).
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from gmzoo.nn.conv import ConvDecoder, ConvEncoder, conv_image_shape_error
from gmzoo.nn.heads import (
    DecoderOutput,
    likelihood_head_error,
    likelihood_params,
    num_likelihood_params,
)
from gmzoo.nn.mlp import MLP, MLPDecoder, MLPEncoder, mlp_image_shape_error

ARCHITECTURES: tuple[str, ...] = ("mlp", "conv")

Gaussian = tuple[jax.Array, jax.Array]  # (mean, log_var), each [B, Z]


def image_shape_error(
    image_shape: tuple[int, ...], architecture: str, hidden: tuple[int, ...]
) -> str | None:
    """Why `architecture` with `hidden` cannot take `image_shape`, or None if it can."""
    if architecture not in ARCHITECTURES:
        return f"architecture must be one of {ARCHITECTURES}, got {architecture!r}"
    if len(hidden) < 1:
        return f"hidden must name at least one layer width, got {tuple(hidden)}"
    if architecture == "conv":
        return conv_image_shape_error(tuple(image_shape), len(hidden))
    return mlp_image_shape_error(tuple(image_shape))


def validate_image_shape(
    image_shape: tuple[int, ...], *, architecture: str = "mlp", hidden: tuple[int, ...] = (512,)
) -> None:
    """Raise a one-line ValueError if `architecture`/`hidden` cannot take `image_shape`."""
    error = image_shape_error(image_shape, architecture, hidden)
    if error is not None:
        raise ValueError(error)


def _check_fields(module: nn.Module, *, likelihood: str | None, num_levels: int) -> None:
    """Validate the fields shared by all models of this file (called from __post_init__)."""
    validate_image_shape(module.image_shape, architecture=module.architecture, hidden=module.hidden)
    if module.latent_dim < 1:
        raise ValueError(f"latent_dim must be a positive integer, got {module.latent_dim}")
    if likelihood is not None:
        error = likelihood_head_error(likelihood, num_levels)
        if error is not None:
            raise ValueError(error)


def _image_encoder(architecture: str, hidden: tuple[int, ...]) -> nn.Module:
    """`[B, H, W, C] -> [B, F]` network for `architecture`."""
    return ConvEncoder(hidden) if architecture == "conv" else MLPEncoder(hidden)


def _image_decoder(
    architecture: str, image_shape: tuple[int, int, int], hidden: tuple[int, ...], num_params: int
) -> nn.Module:
    """`[B, Z] -> [B, H, W, C, P]` network for `architecture`."""
    cls = ConvDecoder if architecture == "conv" else MLPDecoder
    return cls(tuple(image_shape), tuple(hidden), num_params)


def _split_gaussian(stats: jax.Array) -> Gaussian:
    """`[B, 2Z] -> (mean [B, Z], log_var [B, Z])`."""
    mean, log_var = jnp.split(stats, 2, axis=-1)
    return mean, log_var


def _sample_gaussian(key: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """Reparameterised draw z = mean + exp(log_var / 2) * eps, eps ~ N(0, I)."""
    return mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape, mean.dtype)


class Autoencoder(nn.Module):
    """Deterministic autoencoder: z = f(x) (`encode`), x_hat = g(z) (`decode`, real-valued)."""

    image_shape: tuple[int, int, int]
    latent_dim: int
    architecture: str = "mlp"
    hidden: tuple[int, ...] = (512, 256)

    def __post_init__(self) -> None:
        _check_fields(self, likelihood=None, num_levels=0)
        super().__post_init__()

    def setup(self) -> None:
        self.encoder = _image_encoder(self.architecture, self.hidden)
        self.to_latent = nn.Dense(self.latent_dim)
        self.decoder = _image_decoder(self.architecture, self.image_shape, self.hidden, 1)

    def encode(self, x: jax.Array) -> jax.Array:
        """`[B, H, W, C] -> z [B, Z]`."""
        return self.to_latent(self.encoder(x))

    def decode(self, z: jax.Array) -> jax.Array:
        """`z [B, Z] -> x_hat [B, H, W, C]`."""
        return self.decoder(z)[..., 0]

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Returns `(x_hat [B, H, W, C], z [B, Z])`."""
        z = self.encode(x)
        return self.decode(z), z


class VAE(nn.Module):
    """VAE: q(z|x) = N(mean(x), diag exp(log_var(x))), p(z) = N(0, I), p(x|z) from `decode`.

    `__call__(x, key)` draws z ~ q(z|x) by reparameterisation (notes 002, "The
    Reparameterization Trick") and returns `(decode(z), mean, log_var)`.
    """

    image_shape: tuple[int, int, int]
    latent_dim: int
    likelihood: str = "bernoulli"
    architecture: str = "mlp"
    hidden: tuple[int, ...] = (512, 256)
    num_levels: int = 256  # categorical only
    min_log_scale: float = -7.0  # gaussian / discretized_logistic only

    def __post_init__(self) -> None:
        _check_fields(self, likelihood=self.likelihood, num_levels=self.num_levels)
        super().__post_init__()

    def setup(self) -> None:
        num_params = num_likelihood_params(self.likelihood, self.num_levels)
        self.encoder = _image_encoder(self.architecture, self.hidden)
        self.posterior = nn.Dense(2 * self.latent_dim)
        self.decoder = _image_decoder(self.architecture, self.image_shape, self.hidden, num_params)

    def encode(self, x: jax.Array) -> Gaussian:
        """`x [B, H, W, C] -> (mean, log_var)` of q(z|x), each `[B, Z]`."""
        return _split_gaussian(self.posterior(self.encoder(x)))

    def decode(self, z: jax.Array) -> DecoderOutput:
        """`z [B, Z] ->` parameters of p(x|z) (see `gmzoo.nn.heads`)."""
        return likelihood_params(self.decoder(z), self.likelihood, self.min_log_scale)

    def __call__(self, x: jax.Array, key: jax.Array) -> tuple[DecoderOutput, jax.Array, jax.Array]:
        mean, log_var = self.encode(x)  # [B, Z] each
        z = _sample_gaussian(key, mean, log_var)  # [B, Z]
        return self.decode(z), mean, log_var


class HierarchicalVAE(nn.Module):
    """Markovian hierarchical VAE with `num_layers` >= 2 stochastic layers (notes 002, "Markovian
    Hierarchical VAE"; Burda et al. 2016 two-layer model):

        p(x, z_{1:T}) = p(z_T) p(x | z_1) prod_{t=2}^T p(z_{t-1} | z_t),   p(z_T) = N(0, I)
        q(z_{1:T} | x) = q(z_1 | x) prod_{t=2}^T q(z_t | z_{t-1})

    All conditionals are diagonal Gaussians. x <-> z_1 use the `architecture`/`hidden` networks
    (as in `VAE`); each latent link z_t <-> z_{t+1} is an MLP with widths `latent_hidden`.
    Layers are numbered 1..T as in the equations.
    """

    image_shape: tuple[int, int, int]
    latent_dim: int
    num_layers: int = 2
    likelihood: str = "bernoulli"
    architecture: str = "mlp"
    hidden: tuple[int, ...] = (256, 256)
    latent_hidden: tuple[int, ...] = (128, 128)
    num_levels: int = 256
    min_log_scale: float = -7.0

    def __post_init__(self) -> None:
        _check_fields(self, likelihood=self.likelihood, num_levels=self.num_levels)
        if self.num_layers < 2:
            raise ValueError(
                f"HierarchicalVAE needs num_layers >= 2 (use VAE for one layer), got {self.num_layers}"
            )
        super().__post_init__()

    def setup(self) -> None:
        num_params = num_likelihood_params(self.likelihood, self.num_levels)
        links = tuple(self.latent_hidden) + (2 * self.latent_dim,)
        self.encoder = _image_encoder(self.architecture, self.hidden)
        self.posterior_1 = nn.Dense(2 * self.latent_dim)
        # up[t-1]: q(z_{t+1} | z_t);  down[t-1]: p(z_t | z_{t+1})
        self.up = [MLP(links, nn.tanh) for _ in range(1, self.num_layers)]
        self.down = [MLP(links, nn.tanh) for _ in range(1, self.num_layers)]
        self.decoder = _image_decoder(self.architecture, self.image_shape, self.hidden, num_params)

    def encode(self, x: jax.Array) -> Gaussian:
        """`x [B, H, W, C] -> (mean, log_var)` of q(z_1 | x), each `[B, Z]`."""
        return _split_gaussian(self.posterior_1(self.encoder(x)))

    def encode_latent(self, z: jax.Array, layer: int) -> Gaussian:
        """q(z_{layer+1} | z_layer) for layer in 1..T-1: `z_layer [B, Z] -> (mean, log_var)`."""
        return _split_gaussian(self.up[layer - 1](z))

    def prior(self, z: jax.Array, layer: int) -> Gaussian:
        """p(z_layer | z_{layer+1}) for layer in 1..T-1: `z_{layer+1} [B, Z] -> (mean, log_var)`."""
        return _split_gaussian(self.down[layer - 1](z))

    def decode(self, z: jax.Array) -> DecoderOutput:
        """`z_1 [B, Z] ->` parameters of p(x | z_1) (see `gmzoo.nn.heads`)."""
        return likelihood_params(self.decoder(z), self.likelihood, self.min_log_scale)

    def infer(
        self, mean_1: jax.Array, log_var_1: jax.Array, key: jax.Array
    ) -> tuple[tuple[jax.Array, ...], tuple[Gaussian, ...], tuple[Gaussian, ...]]:
        """Ancestral draw z_{1:T} ~ q(z_{1:T} | x) given q(z_1 | x) = N(mean_1, exp(log_var_1)).

        Returns `(zs, posteriors, priors)`, each a length-T tuple indexed t-1: z_t `[B, Z]`,
        the (mean, log_var) of q(z_t | z_{t-1}) and of p(z_t | z_{t+1}) (zeros for p(z_T)).
        """
        keys = jax.random.split(key, self.num_layers)
        zs = [_sample_gaussian(keys[0], mean_1, log_var_1)]
        posteriors = [(mean_1, log_var_1)]
        for layer in range(1, self.num_layers):
            mean, log_var = self.encode_latent(zs[-1], layer)
            posteriors.append((mean, log_var))
            zs.append(_sample_gaussian(keys[layer], mean, log_var))
        priors = [self.prior(zs[layer], layer) for layer in range(1, self.num_layers)]
        top = jnp.zeros_like(zs[-1])
        priors.append((top, top))  # p(z_T) = N(0, I)
        return tuple(zs), tuple(posteriors), tuple(priors)

    def __call__(
        self, x: jax.Array, key: jax.Array
    ) -> tuple[DecoderOutput, tuple[jax.Array, ...], tuple[Gaussian, ...], tuple[Gaussian, ...]]:
        """Returns `(decode(z_1), zs, posteriors, priors)` as in `infer`."""
        mean_1, log_var_1 = self.encode(x)
        zs, posteriors, priors = self.infer(mean_1, log_var_1, key)
        return self.decode(zs[0]), zs, posteriors, priors


# Variants (Flax's `ResNet50 = partial(ResNet, ...)` pattern). Callers pass image_shape,
# latent_dim and (for VAEs) likelihood.
MLPAutoencoder = partial(Autoencoder, architecture="mlp", hidden=(512, 256))
ConvAutoencoder = partial(Autoencoder, architecture="conv", hidden=(32, 64))
MLPVAE = partial(VAE, architecture="mlp", hidden=(512, 256))
ConvVAE = partial(VAE, architecture="conv", hidden=(32, 64))
MLPHierarchicalVAE = partial(
    HierarchicalVAE, architecture="mlp", hidden=(256, 256), latent_hidden=(128, 128)
)
ConvHierarchicalVAE = partial(
    HierarchicalVAE, architecture="conv", hidden=(32, 64), latent_hidden=(128, 128)
)

# Tiny variants for tests.
TinyMLPAutoencoder = partial(Autoencoder, architecture="mlp", hidden=(16,))
TinyConvAutoencoder = partial(Autoencoder, architecture="conv", hidden=(4, 8))
TinyMLPVAE = partial(VAE, architecture="mlp", hidden=(16,))
TinyConvVAE = partial(VAE, architecture="conv", hidden=(4, 8))
TinyHierarchicalVAE = partial(HierarchicalVAE, architecture="mlp", hidden=(16,), latent_hidden=(8,))
