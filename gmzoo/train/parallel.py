"""Data parallelism with a device mesh and ``NamedSharding`` (no ``pmap``).

The global batch is split over every device of every process along the ``"data"`` mesh axis;
the train state is replicated. ``jax.jit`` with these shardings inserts the gradient all-reduce.
Several hosts: call ``jax.distributed.initialize`` first; each process then feeds only its own
rows of the global batch (``BatchIterator(process_index=..., process_count=...)``).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def data_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh over all (global) devices, axis ``"data"``."""
    devices = jax.devices() if devices is None else devices
    return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, *, stacked: bool = True) -> NamedSharding:
    """Sharding of a batch ``[B, ...]``, or a stack of batches ``[K, B, ...]`` if ``stacked``."""
    return NamedSharding(mesh, P(None, DATA_AXIS) if stacked else P(DATA_AXIS))


def check_batch_divisible(global_batch: int, mesh: Mesh) -> None:
    n = mesh.devices.size
    if global_batch % n:
        raise ValueError(f"train.batch_size={global_batch} must be a multiple of the number of "
                         f"devices ({n}) to split it evenly")


def put_batch(local_batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Places this process's rows of the global batch on its devices."""
    if jax.process_count() == 1:
        return jax.device_put(local_batch, sharding)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)


def put_replicated(tree: Any, mesh: Mesh) -> Any:
    """Copies ``tree`` (the same values on every process) to every device of ``mesh``."""
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    # Several processes: device_put cannot target devices of other processes; each process
    # supplies its (identical) copy. Typed PRNG keys travel as their raw key data.
    def put(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            data = jax.make_array_from_process_local_data(
                sharding, np.asarray(jax.random.key_data(x)))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))

    return jax.tree.map(put, tree)


def compile_steps(run: Callable, mesh: Mesh) -> Callable:
    """``jax.jit`` of ``run(state, batches)`` with the state replicated and donated, the batch
    stack split along ``"data"``, and the metrics replicated."""
    rep = replicated(mesh)
    return jax.jit(run, in_shardings=(rep, batch_sharding(mesh)), out_shardings=(rep, rep),
                   donate_argnums=(0,))
