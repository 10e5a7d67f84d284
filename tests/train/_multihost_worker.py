"""One process of a (possibly multi-process) training run, launched by ``test_multihost.py``.

    python _multihost_worker.py --workdir W --out OUT.npz --local-devices N \
        [--num-processes P --process-id I --port PORT] -- key=value ...

Sets ``jax_num_cpu_devices=N``, joins a ``jax.distributed`` job of P processes on localhost if
P > 1, runs ``gmzoo.zoo.train(config, W)`` on the tiny config given by the overrides,
restores the checkpoint it wrote with ``zoo.load_run(W)`` (also a collective when P > 1), and
writes to OUT.npz: this process's copy of the initial parameters (``init_params[...]``), the
final state (``params[...]``, ``ema_params[...]``, ``step``), the restored state (``restored_params[...]``, ``restored_ema_params[...]``) and
``info`` (JSON: process index/count, device counts, the shapes and shardings of every batch the
loop placed on the devices).
"""

from __future__ import annotations

import argparse
import json
import sys


def _local_copy(x, name: str):
    """This process's copy of a replicated global array (all local copies must be equal)."""
    import numpy as np

    shards = [np.asarray(s.data) for s in x.addressable_shards]
    for s in shards[1:]:
        if not np.array_equal(s, shards[0]):
            raise AssertionError(f"{name}: the local replicas of a replicated array differ")
    return shards[0]


def _flat(tree, prefix: str) -> dict:
    import jax

    return {f"{prefix}{jax.tree_util.keystr(path)}": _local_copy(x, prefix + jax.tree_util.keystr(path))
            for path, x in jax.tree_util.tree_leaves_with_path(tree)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--local-devices", type=int, required=True)
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    import jax

    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", args.local_devices)
    if args.num_processes > 1:
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{args.port}",
                                   num_processes=args.num_processes, process_id=args.process_id,
                                   initialization_timeout=60)

    import numpy as np

    from gmzoo import config as cfglib
    from gmzoo import zoo
    from gmzoo.train import loop, parallel

    placed: list[dict] = []
    put_batch = parallel.put_batch

    def recording_put_batch(local_batch, sharding):
        out = put_batch(local_batch, sharding)
        placed.append({name: {
            "local_shape": list(np.shape(local_batch[name])),
            "global_shape": list(x.shape),
            "num_devices": len(x.sharding.device_set),
            "addressable_shard_shapes": [list(s.data.shape) for s in x.addressable_shards],
            # which global rows (axis 1 of the [K, B, ...] stack) this process holds
            "addressable_rows": sorted({(s.index[1].start or 0, s.index[1].stop or x.shape[1])
                                        for s in x.addressable_shards}),
            # the placed rows must be exactly this process's slice of the global batch
            "local_equals_placed": bool(np.array_equal(
                np.concatenate([np.asarray(s.data) for s in sorted(
                    x.addressable_shards, key=lambda s: s.index[1].start or 0)], axis=1),
                np.asarray(local_batch[name]))),
        } for name, x in out.items()})
        return out

    parallel.put_batch = recording_put_batch

    initial: dict = {}
    init_state = loop.init_state

    def recording_init_state(run):
        state = init_state(run)
        if not initial:  # train() calls it first; copy now, the step donates these buffers
            initial.update(_flat(state.params, "init_params"))
        return state

    loop.init_state = recording_init_state

    config = cfglib.override(zoo.get("vae").default(), args.overrides)
    state = zoo.train(config, args.workdir, verbose=False)
    arrays = {"step": np.asarray(_local_copy(state.step, "step"))}
    arrays.update(_flat(state.params, "params"))
    arrays.update(_flat(state.ema_params, "ema_params"))
    arrays.update(initial)

    _, restored = zoo.load_run(args.workdir)
    arrays.update(_flat(restored.params, "restored_params"))
    arrays.update(_flat(restored.ema_params, "restored_ema_params"))

    info = {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
        "placed": placed,
    }
    np.savez(args.out, info=np.asarray(json.dumps(info)), **arrays)
    if args.num_processes > 1:
        jax.distributed.shutdown()
    print("worker done", args.process_id, flush=True)


if __name__ == "__main__":
    sys.exit(main())
