"""Evaluation metrics, one idea per module (import the module you need):

- frechet.py: PSD matrix square root and the Frechet distance between feature Gaussians.
- kid.py: Kernel Inception Distance (unbiased MMD^2, cubic polynomial kernel).
- classifier.py: the per-data-set CNN feature net (trained deterministically, cached).
- sample_quality.py: fd_and_kid / reference_fd on images through a feature function.
- baselines.py: likelihood baselines (uniform, per-pixel categorical, Bernoulli).
- image.py: PSNR and SSIM.
"""
