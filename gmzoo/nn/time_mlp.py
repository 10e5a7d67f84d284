"""Time-conditioned MLP denoiser for vectors `[B, D]` (2-D toy data, latent diffusion)."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from gmzoo.nn.embeddings import TimeEmbedding


class TimeMLP(nn.Module):
    """Denoiser `(x [B, D], t [B], y [B] | None, cond [B, Dc] | None) -> [B, out_dim]`.

        emb = TimeEmbedding(t, y)                                  (width hidden[0])
        h_0 = x ++ cond;   h_l = SiLU(Dense(h_{l-1}) + Dense(SiLU(emb)))   for each width
        out = Dense(h_L)                                           (zero-initialised)

    The same call convention as `gmzoo.nn.unet.UNet` (t is the noise-conditioning value, e.g.
    the timestep index or 999 * t); `num_classes` > 0 adds a class embedding with a "no label"
    row chosen by `y=None`. `out_dim` defaults to D. `train` is accepted for the common
    signature and unused (no dropout).
    """

    hidden: tuple[int, ...] = (256, 256, 256)
    num_classes: int = 0
    out_dim: int | None = None

    def __post_init__(self) -> None:
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"TimeMLP: hidden must be one or more positive widths, got {tuple(self.hidden)}")
        if self.num_classes < 0:
            raise ValueError(f"TimeMLP: num_classes must be >= 0, got {self.num_classes}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.typing.ArrayLike, y: jax.Array | None = None,
                 cond: jax.Array | None = None, *, train: bool = False) -> jax.Array:
        del train
        if x.ndim != 2:
            raise ValueError(f"TimeMLP takes vectors [B, D], got shape {x.shape} (flatten images first)")
        out_dim = self.out_dim or x.shape[-1]
        if cond is not None:
            if cond.ndim != 2 or cond.shape[0] != x.shape[0]:
                raise ValueError(f"cond must be [B, Dc] with B = {x.shape[0]}, got {cond.shape}")
            x = jnp.concatenate([x, cond.astype(x.dtype)], axis=-1)  # [B, D + Dc]
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x.shape[0],))  # [B]
        width = self.hidden[0]
        emb = nn.silu(TimeEmbedding(width, width, self.num_classes, name="time_embed")(t, y))  # [B, width]
        h = x
        for i, width in enumerate(self.hidden):
            h = nn.Dense(width, name=f"dense_{i}")(h) + nn.Dense(width, name=f"emb_proj_{i}")(emb)
            h = nn.silu(h)  # [B, width]
        return nn.Dense(out_dim, kernel_init=nn.initializers.zeros_init(), name="out")(h)  # [B, out_dim]


TinyTimeMLP = functools.partial(TimeMLP, hidden=(16, 16))
