"""Normalizing flows: an invertible map z = f(x) of images to a simple base density, with the
exact likelihood log p(x) = log p_Z(f(x)) + log |det df/dx| (Dinh et al. 2017, Real NVP;
Kingma & Dhariwal 2018, Glow).

- :mod:`~gmzoo.families.flows.bijectors`: affine couplings (checkerboard and channel masks,
  conditional), squeeze, ActNorm, the LU 1x1 convolution, the logit transform, chains; each
  returns its output and its log-determinant together.
- :mod:`~gmzoo.families.flows.models`: Real NVP and Glow, multi-scale with factored-out latents.
- :mod:`~gmzoo.families.flows.dequantization`: variational dequantization (Flow++).
- :mod:`~gmzoo.families.flows.family`: the rows ``realnvp`` and ``glow``.
- :mod:`~gmzoo.families.flows.superres`: the row ``cond_flow``, a conditional Glow for
  super-resolution.
"""
