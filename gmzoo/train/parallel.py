"""Data parallelism with a device mesh and ``NamedSharding`` (no ``pmap``).

The global batch is split over every device of every process along the ``"data"`` mesh axis;
the train state is replicated. ``jax.jit`` with these shardings inserts the gradient all-reduce.
Several hosts: call ``jax.distributed.initialize`` first (``gmzoo.train.distributed``); each
process then feeds only its own rows of the global batch
(``BatchIterator(process_index=..., process_count=...)``).

Calls in flight. :func:`compile_steps` returns a step that keeps at most ``max_in_flight`` calls
dispatched but unfinished (it waits for the oldest call's metrics first). Without that bound,
several CPU devices deadlock once the host runs 32 steps ahead: XLA:CPU
(``xla/pjrt/cpu/cpu_client.cc``) launches each device's part of a multi-device call on a pool of
``max(cores, local devices)`` threads, a launch blocks its thread while the device already has
``max_inflight_computations_per_device = 32`` computations queued, and a running part blocks
its thread until its all-reduce meets every other device's part. On 2 cores with 2 devices, one
thread waits in a launch for device 1 and the other runs device 0's all-reduce, so device 1's
part of that step never gets a thread ("Expected 2 threads to join the rendezvous, but only 1
of them arrived"). A loop that calls its own ``jax.jit`` step on a mesh needs the same bound:
wrap it in :class:`BoundedSteps`.

A second trap of several CPU devices: jaxlib's CPU LAPACK calls (Cholesky, ...) split a batch
of matrices over the intra-op thread pool and block until it is done, from a thread of that
same pool; with every device doing so at once, no thread is left to run the batch. Factor one
matrix per call (``lax.map``), as :func:`gmzoo.families.gmm.em.cholesky` does.
"""

from __future__ import annotations

import collections
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
# Calls of the train step dispatched but unfinished. Any bound below XLA:CPU's 32 computations
# per device avoids the deadlock (module docstring); 2 lets the host prepare the next batch
# while a step runs, which is all the overlap a train loop uses.
MAX_IN_FLIGHT = 2


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


class BoundedSteps:
    """``fn(*args) -> (state, metrics)`` with at most ``max_in_flight`` calls unfinished.

    Before a call it blocks until the metrics of all but the last ``max_in_flight - 1`` earlier
    calls are ready (never the donated state). Other attributes (``lower``, ...) are ``fn``'s.
    """

    def __init__(self, fn: Callable, max_in_flight: int = MAX_IN_FLIGHT):
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight={max_in_flight} must be at least 1")
        self.fn, self.max_in_flight = fn, max_in_flight
        self._pending: collections.deque = collections.deque()

    def __call__(self, *args):
        while len(self._pending) >= self.max_in_flight:
            jax.block_until_ready(self._pending.popleft())
        state, metrics = self.fn(*args)
        self._pending.append(metrics)
        return state, metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fn, name)


def compile_steps(run: Callable, mesh: Mesh, *, max_in_flight: int = MAX_IN_FLIGHT) -> BoundedSteps:
    """``jax.jit`` of ``run(state, batches) -> (state, metrics)`` with the state replicated and
    donated, the batch stack split along ``"data"`` and the metrics replicated, called with at
    most ``max_in_flight`` calls unfinished (:class:`BoundedSteps`; see the module docstring)."""
    rep = replicated(mesh)
    step = jax.jit(run, in_shardings=(rep, batch_sharding(mesh)), out_shardings=(rep, rep),
                   donate_argnums=(0,))
    return BoundedSteps(step, max_in_flight)
