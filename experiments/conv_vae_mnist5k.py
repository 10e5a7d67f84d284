"""Convolutional VAE on mnist5k, dynamically binarized.

    gmzoo train experiments/conv_vae_mnist5k.py --workdir runs/conv_vae_mnist5k
    gmzoo evaluate --workdir runs/conv_vae_mnist5k
"""

from gmzoo import zoo


def get_config():
    return zoo.get("conv_vae").default()
