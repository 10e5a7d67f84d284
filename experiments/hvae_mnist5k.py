"""Markovian hierarchical VAE (two stochastic layers) on mnist5k, dynamically binarized.

    gmzoo train experiments/hvae_mnist5k.py --workdir runs/hvae_mnist5k
    gmzoo evaluate --workdir runs/hvae_mnist5k
"""

from gmzoo import zoo


def get_config():
    return zoo.get("hvae").default()
