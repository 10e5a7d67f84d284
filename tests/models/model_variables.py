"""Variables of a Flax model drawn in numpy, for the model tests: a compiled Flax initialiser
costs seconds of XLA compile on CPU, `jax.eval_shape` of `init` costs none."""

import jax
import jax.numpy as jnp
import numpy as np


def numpy_variables(model, *args, scale=1.0, seed=0, **kwargs):
    """Variables with `model.init(key, *args, **kwargs)`'s tree, drawn in numpy: kernels and
    embeddings N(0, scale^2 / fan_in), biases N(0, 0.01), norm scales 1 + N(0, 0.01), BN running
    mean 0 and var 1, spectral norm u ~ N(0, 1) and sigma 1 (as Flax initialises them), PReLU
    slopes 0.25."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda *a: model.init(jax.random.key(0), *a, **kwargs), *args)

    def draw(path, leaf):
        name = path[-1].key.rsplit("/", 1)[-1]  # spectral norm names its leaves "conv_0/kernel/u"
        if name in ("mean", "sigma"):
            value = np.zeros(leaf.shape) if name == "mean" else np.ones(leaf.shape)
        elif name == "var":
            value = np.ones(leaf.shape)
        elif name == "scale":
            value = 1.0 + 0.1 * rng.normal(size=leaf.shape)
        elif name == "u":
            value = rng.normal(size=leaf.shape)
        elif name == "negative_slope":
            value = np.full(leaf.shape, 0.25)
        elif len(leaf.shape) > 1:
            value = rng.normal(size=leaf.shape) * scale / np.sqrt(np.prod(leaf.shape[:-1]))
        else:
            value = 0.1 * rng.normal(size=leaf.shape)
        return jnp.asarray(value, jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)
