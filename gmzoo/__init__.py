"""gmzoo: a JAX/Flax functional zoo of deep generative models."""

__version__ = "0.1.0"
