"""Vector-quantised VAE (van den Oord et al. 2017, "Neural Discrete Representation Learning"):
an encoder's outputs z_e snapped to the nearest of K learned codes, z_q = e_k, decoded back to
the image, so an image becomes a map of integer codes that an autoregressive prior can model.

:mod:`gmzoo.families.vqvae.quantizer` holds the quantizer (nearest code, straight-through
estimator, codebook and commitment losses, codebook learned by the loss or by EMA, perplexity);
:mod:`gmzoo.families.vqvae.model` the conv VQ-VAE and its loss."""
