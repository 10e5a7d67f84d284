"""MLP VAE on the 5,000 embedded MNIST digits, dynamically binarized (resampled every step).

The README's main job; the same as `gmzoo train vae`:

    gmzoo train experiments/vae_mnist5k.py --workdir runs/vae_mnist5k
    gmzoo evaluate --workdir runs/vae_mnist5k          # IWAE k=1000 NLL in nats, FD, KID
"""

from gmzoo import zoo


def get_config():
    return zoo.get("vae").default()
