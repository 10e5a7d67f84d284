"""Orbax checkpoints: train state, data-iterator position and config saved together.

Each checkpoint ``<workdir>/checkpoints/<step>/`` holds three items: ``state`` (the
:class:`TrainState`, its typed key stored as raw key data), ``data`` (the iterator position, JSON)
and ``config`` (the experiment config, JSON). Orbax writes to a temporary folder and renames it
when complete, so a process killed mid-save leaves the previous checkpoints intact; the
unfinished folder is ignored and cleaned up on the next start.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from gmzoo.train.state import TrainState


def _to_saveable(state: TrainState) -> TrainState:
    return state.replace(key=jax.random.key_data(state.key))


def _from_saveable(state: TrainState, impl: Any) -> TrainState:
    return state.replace(key=jax.random.wrap_key_data(state.key, impl=impl))


class Checkpointer:
    """A thin layer over ``ocp.CheckpointManager`` keeping the last ``keep`` checkpoints."""

    def __init__(self, directory: str, *, keep: int = 3, read_only: bool = False):
        """``read_only``: a reader (``gmzoo sample`` / ``evaluate``, a first stage) that creates,
        cleans and deletes nothing, so a training writing into the same folder goes on (a
        writer's manager removes unfinished ``*.orbax-checkpoint-tmp`` folders, which would
        take the checkpoint being written)."""
        self.directory = os.path.abspath(directory)
        absl = logging.getLogger("absl")
        level = absl.level
        if read_only:  # orbax warns that the folder is read only: that is the point
            absl.setLevel(logging.ERROR)
        try:
            if read_only:
                options = ocp.CheckpointManagerOptions(read_only=True, create=False,
                                                       cleanup_tmp_directories=False)
            else:
                options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                       cleanup_tmp_directories=True)
            self._manager = ocp.CheckpointManager(self.directory, options=options,
                                                  item_names=("state", "data", "config"))
        finally:
            absl.setLevel(level)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: TrainState, *, data_state: dict, config: dict) -> None:
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(_to_saveable(state)),
            data=ocp.args.JsonSave(data_state),
            config=ocp.args.JsonSave(config)))

    def restore(self, like: TrainState, step: int | None = None) -> tuple[TrainState, dict, dict]:
        """Restores ``(state, data_state, config_dict)``; ``like`` gives structure and shardings."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_saveable(like))
        out = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract),
            data=ocp.args.JsonRestore(),
            config=ocp.args.JsonRestore()))
        impl = jax.random.key_impl(like.key)
        return _from_saveable(out["state"], impl), out["data"], out["config"]

    def restore_config(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        out = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        return out["config"]

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
