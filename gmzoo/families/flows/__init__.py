"""Normalizing flows: an invertible map z = f(x) of images to a simple base density, with the
exact likelihood log p(x) = log p_Z(f(x)) + log |det df/dx| (Dinh et al. 2017, Real NVP;
Kingma & Dhariwal 2018, Glow).

The family will hold the bijectors (:mod:`gmzoo.families.flows.bijectors`: affine couplings,
squeeze, ActNorm, the invertible 1x1 convolution, dequantization and the logit transform), the
multi-scale flows built from them, their likelihood in bits per dimension, and sampling by the
inverse map."""
