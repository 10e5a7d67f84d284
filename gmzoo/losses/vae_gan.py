"""The VAE/GAN's objective terms (Larsen et al. 2016, "Autoencoding beyond pixels using a learned
similarity metric", Alg. 1), pure functions of discriminator outputs and features, composed by
`gmzoo.recipes.vae_gan`:

- `feature_loss`: L_llike^Dis_l, the Gaussian NLL of Dis_l(x) around Dis_l(Dec(z)), per example;
- `discriminator_loss`: -L_GAN over real, reconstructed and prior-decoded images;
- `decoder_gan_loss`: Dec's GAN term in the non-saturating form;
- `scale_gradient`: identity forward, scaled gradient backward, so one generator loss gives the
  encoder and the decoder Alg. 1's different weightings (gamma on Dec's L_llike only).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gmzoo.losses import gan as gan_losses


def scale_gradient(tree: Any, scale: float) -> Any:
    """The identity on every leaf in the forward pass, ``scale`` x the gradient in the backward
    pass: sg(p) + scale (p - sg(p)) (p - sg(p) is exactly 0, so the value is exactly p)."""
    def leaf(p):
        p0 = jax.lax.stop_gradient(p)
        return p0 + scale * (p - p0)
    return jax.tree.map(leaf, tree)


def feature_loss(real_features: jax.Array, fake_features: jax.Array) -> jax.Array:
    """-log N(Dis_l(x); Dis_l(x~), I) up to its constant (D_l / 2) log 2 pi (Larsen et al. 2016,
    L_llike^Dis_l): 1/2 sum of squared differences over the feature axes. ``[B, ...] x2 -> [B]``."""
    diff = (real_features.astype(jnp.float32) - fake_features.astype(jnp.float32))
    return 0.5 * jnp.sum(jnp.square(diff.reshape(diff.shape[0], -1)), axis=1)


def discriminator_loss(real_logits: jax.Array, recon_logits: jax.Array,
                       prior_logits: jax.Array) -> jax.Array:
    """-L_GAN = -[E log Dis(x) + E log(1 - Dis(Dec(z))) + E log(1 - Dis(Dec(z_p)))] (Larsen et
    al. 2016, Alg. 1), Dis = sigmoid(logit). ``[B] x3 -> scalar``."""
    log_not_prior = jax.nn.log_sigmoid(-prior_logits.astype(jnp.float32))  # log(1 - Dis(x_p))
    return -(gan_losses.minimax_value(real_logits, recon_logits) + jnp.mean(log_not_prior))


def decoder_gan_loss(recon_logits: jax.Array, prior_logits: jax.Array) -> jax.Array:
    """Dec's GAN term in the non-saturating form (Goodfellow et al. 2014, Sec. 3):
    -E log Dis(Dec(z)) - E log Dis(Dec(z_p)). ``[B] x2 -> scalar``."""
    return (gan_losses.non_saturating_g_loss(recon_logits)
            + gan_losses.non_saturating_g_loss(prior_logits))
