"""Orbax checkpoints: train state, data-iterator position and config saved together.

Each checkpoint ``<workdir>/checkpoints/<step>/`` holds three items: ``state`` (the
:class:`TrainState`, its typed key stored as raw key data), ``data`` (the iterator position, JSON)
and ``config`` (the experiment config, JSON). Orbax writes to ``<step>.orbax-checkpoint-tmp*``
and renames it when complete (asynchronously: :meth:`Checkpointer.close` waits), so a process
killed mid-save leaves the previous checkpoints intact.

Two kinds of :class:`Checkpointer`:

- a **writer** (the training, which holds the workdir's lock) keeps the last ``keep`` and, when
  it opens, removes the unfinished ``*.orbax-checkpoint-tmp*`` folders of a killed run itself
  (orbax's own clean-up runs in a background future that outlives a quick refusal and ends in
  "cannot schedule new futures after shutdown");
- a **reader** (``read_only=True``: ``gmzoo sample`` / ``evaluate``, a first stage, the config
  read of ``--resume``) creates, cleans and deletes nothing, so a training writing the same
  folder goes on. Use either as a context manager: it is always closed.

:meth:`Checkpointer.restore_newest` restores the newest intact checkpoint: a damaged one (a
truncated or missing file) is skipped with one line naming it and the step used; a step the
running training deleted meanwhile is skipped silently; ``step=`` picks one. Orbax's own log
records and the "Event loop is closed" noise a failed TensorStore read leaves behind are
dropped (gmzoo reports the failure itself); ``GMZOO_ORBAX_LOGS=1`` keeps them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import sys
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp

from gmzoo.config import ConfigError
from gmzoo.train.state import TrainState

_TMP = re.compile(r"\d+\.orbax-checkpoint-tmp.*")


class CheckpointError(RuntimeError):
    """No intact checkpoint to restore, or the one asked for is damaged."""


@dataclasses.dataclass(frozen=True)
class Restored:
    """What :meth:`Checkpointer.restore_newest` restored, and the newer steps it skipped."""

    step: int
    state: TrainState
    data_state: dict
    config: dict
    damaged: tuple[tuple[int, str], ...] = ()  # (step, reason), newest first


def _to_saveable(state: TrainState) -> TrainState:
    return state.replace(key=jax.random.key_data(state.key))


def _from_saveable(state: TrainState, impl: Any) -> TrainState:
    return state.replace(key=jax.random.wrap_key_data(state.key, impl=impl))


class _NotOrbax(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "orbax" not in record.pathname.split(os.sep)


def _orbax_noise(unraisable: Any) -> bool:
    """What a failed TensorStore read leaves behind: callbacks into orbax's closed event loop,
    and orbax read coroutines finalized with their (already reported) error."""
    v, code = unraisable.exc_value, getattr(unraisable.object, "cr_code", None)
    return ((isinstance(v, RuntimeError) and str(v) == "Event loop is closed")
            or (code is not None and "orbax" in code.co_filename.split(os.sep)))


def _quiet_unraisable(previous: Callable) -> Callable:
    def hook(unraisable: Any) -> None:
        if not _orbax_noise(unraisable):
            previous(unraisable)

    hook.gmzoo = True
    return hook


def _quiet_orbax() -> None:
    if os.environ.get("GMZOO_ORBAX_LOGS"):
        return
    absl = logging.getLogger("absl")
    if not any(isinstance(f, _NotOrbax) for f in absl.filters):
        absl.addFilter(_NotOrbax())
    if not getattr(sys.unraisablehook, "gmzoo", False):
        sys.unraisablehook = _quiet_unraisable(sys.unraisablehook)


def _reason(exc: BaseException, directory: str) -> str:
    """The innermost cause of a failed restore in a short phrase."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    text = (str(exc).strip().splitlines() or [""])[0].split(" [tensorstore_spec")[0]
    text = re.sub(r' in OCDBT database at local file "[^"]*"', "", text.replace(directory + os.sep, ""))
    if not re.match(r"[A-Z_]+: ", text):  # TensorStore's status codes name the kind already
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def warn(message: str) -> None:
    """A warning line on stderr (from process 0)."""
    if jax.process_index() == 0:
        print(f"gmzoo: {message}", file=sys.stderr)


class Checkpointer:
    """A thin layer over ``ocp.CheckpointManager``: a writer keeping the last ``keep``
    checkpoints, or a reader (``read_only``) that changes nothing on disk."""

    def __init__(self, directory: str, *, keep: int = 3, read_only: bool = False):
        self.directory = os.path.abspath(directory)
        self.read_only = read_only
        _quiet_orbax()
        if read_only:
            options = ocp.CheckpointManagerOptions(
                read_only=True, create=False, cleanup_tmp_directories=False,
                save_interval_steps=0, enable_async_checkpointing=False)
        else:
            names = os.listdir(self.directory) if os.path.isdir(self.directory) else []
            for name in names if jax.process_index() == 0 else ():
                if _TMP.fullmatch(name):  # a killed run's unfinished save
                    shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
            options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                   cleanup_tmp_directories=False)
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_names=("state", "data", "config"))
        self._closed_steps: list[int] | None = None

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def all_steps(self) -> list[int]:
        if self._closed_steps is not None:
            return list(self._closed_steps)
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: TrainState, *, data_state: dict, config: dict) -> None:
        if self.read_only:
            raise RuntimeError(f"a read-only Checkpointer cannot save into {self.directory}")
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

    def newest_config(self) -> dict | None:
        """The config of the newest checkpoint whose config item reads, or ``None``."""
        for step in reversed(self.all_steps()):
            try:
                return self.restore_config(step)
            except Exception:  # noqa: BLE001 - a damaged item: try the one before
                continue
        return None

    def restore_newest(self, like_of: Callable[[dict], TrainState], *, step: int | None = None,
                       hint: str = "", say: Callable[[str], None] = warn) -> Restored:
        """Restores the newest intact checkpoint (or ``step``). ``like_of(config_dict)`` gives
        the state to restore into (its errors, e.g. a refused config, propagate); a checkpoint
        that fails to read is damaged: the next older one is tried, and one line names both.
        No checkpoint: ``ConfigError`` (``hint`` appended); none intact: ``CheckpointError``."""
        steps = self.all_steps()
        if not steps:
            raise ConfigError(f"{self.directory} holds no finished checkpoint{hint}")
        if step is not None:
            if step not in steps:
                raise ConfigError(f"checkpoint step {step} is not in {self.directory}; its "
                                  f"checkpoints are steps {', '.join(map(str, steps))}")
            out = self._try(step, like_of)
            if isinstance(out, str):
                others = ", ".join(str(s) for s in steps if s != step) or "none"
                raise CheckpointError(f"checkpoint step {step} in {self.directory} is damaged "
                                      f"({out}); other steps: {others} (leave out --step for the "
                                      "newest intact one)")
            return out
        damaged: list[tuple[int, str]] = []
        tried: set[int] = set()
        while True:
            left = [s for s in reversed(self.all_steps()) if s not in tried]
            if not left:
                what = "; ".join(f"step {s}: {r}" for s, r in damaged)
                raise CheckpointError(f"every checkpoint in {self.directory} is damaged ({what})")
            tried.add(left[0])
            out = self._try(left[0], like_of)
            if isinstance(out, Restored):
                break
            if not os.path.isdir(os.path.join(self.directory, str(left[0]))):
                self._manager.reload()  # the running training removed it (max_to_keep)
                continue
            damaged.append((left[0], out))
        if damaged:
            many = len(damaged) > 1
            say(f"checkpoint step{'s' if many else ''} {', '.join(str(s) for s, _ in damaged)} in "
                f"{self.directory} {'are' if many else 'is'} damaged "
                f"({'; '.join(f'{s}: {r}' if many else r for s, r in damaged)}); using step {out.step}")
        return dataclasses.replace(out, damaged=tuple(damaged))

    def _try(self, step: int, like_of: Callable[[dict], TrainState]) -> Restored | str:
        """The restored checkpoint ``step``, or why it cannot be read."""
        try:
            config = self.restore_config(step)
        except Exception as e:  # noqa: BLE001 - orbax / TensorStore raise many kinds
            return _reason(e, self.directory)
        like = like_of(config)
        try:
            state, data_state, config = self.restore(like, step)
        except Exception as e:  # noqa: BLE001
            return _reason(e, self.directory)
        return Restored(step, state, data_state, config)

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for the saves in flight (their errors are raised here) and closes; idempotent."""
        if self._closed_steps is not None:
            return
        error = None
        try:
            self._manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001 - raised below, after closing
            error = e
        steps = [s for s in sorted(self._manager.all_steps())  # the finished ones
                 if os.path.isdir(os.path.join(self.directory, str(s)))]
        try:
            self._manager.close()
        except Exception as e:  # noqa: BLE001
            error = error or e
        self._closed_steps = steps
        if error is not None:
            raise error

    def abort(self) -> None:
        """:meth:`close`, ignoring errors (on the way out of a failure)."""
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.abort()
