"""Helpers the two-player recipe tests share: optimizer step counters and parameter changes."""

import jax
import numpy as np


def counts(opt_state):
    """Every optax step counter in a player's optimizer state, as a set of ints."""
    leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(opt_state))[0]
    return {int(v) for path, v in leaves if "count" in jax.tree_util.keystr(path)}


def changed(a, b):
    """Whether any leaf of two pytrees of one structure differs."""
    return any(not np.array_equal(x, y) for x, y in
               zip(jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b))))
