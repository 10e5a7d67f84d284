"""Vector-quantised VAEs (van den Oord et al. 2017, "Neural Discrete Representation Learning";
Razavi et al. 2019, VQ-VAE-2): an encoder's outputs z_e snapped to the nearest of K learned
codes, z_q = e_k, decoded back to the image, so an image becomes a map of integer codes that an
autoregressive prior can model.

- :mod:`~gmzoo.families.vqvae.quantizer`: nearest code, straight-through estimator, codebook
  and commitment losses, the codebook learned by the loss or by EMA (Laplace-smoothed counts),
  dead-code restarts, code counts and perplexity reduced across devices.
- :mod:`~gmzoo.families.vqvae.model`: the conv VQ-VAE, VQ-VAE-2's two levels of codes, the loss.
- :mod:`~gmzoo.families.vqvae.family`: the rows ``vqvae`` and ``vqvae2`` (stage 1).
- :mod:`~gmzoo.families.vqvae.prior`: the row ``vqvae_prior`` (stage 2), the autoregressive
  family's gated PixelCNN or transformer over the codes of a trained stage-1 run.
"""
