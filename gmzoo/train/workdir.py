"""A run's folder: its marker and manifest, its lock, and what train / resume / overwrite may do.

The rule: no command deletes, truncates or rewrites a file gmzoo did not write, and a fault ends
in one line. The layout, and the choices behind it:

- **Marker** ``gmzoo-run.json`` (format 2): ``written_by: "gmzoo"``, ``format``, ``created``
  (UTC), ``created_by`` (pid, host, command), ``adopted``, ``entries`` (the top-level names the
  run owns: the keys of ``RULES``) and ``files`` (what gmzoo wrote into ``samples/`` and
  ``eval/``, added by :func:`register`). A fresh run, in a new or empty folder, takes the lock
  (``gmzoo-run.lock``) and writes the marker before anything else. Format 1 (no manifest) and an
  empty marker (``touch gmzoo-run.json``: the user vouches for the folder) own every entry of
  ``RULES`` and no ``files``.
- **What gmzoo owns in a marked run** (``RULES``): ``config.json``, ``metrics.jsonl``,
  ``metrics.superseded.jsonl``, ``loss_curve.png``; orbax's step folders in ``checkpoints/``;
  the steps a resume set aside in ``checkpoints-damaged/``; ``events.out.tfevents.*`` in
  ``tensorboard/``; the cached ``feature_net_*.msgpack`` in ``feature_net/``; in ``samples/``
  and ``eval/`` only the registered ``files``. ``--overwrite`` deletes those (never following a
  symlink) and the folders it emptied, keeps the marker and the lock, and prints one line naming
  what it left. A writer that does not register yet leaves its files to the user: nothing is
  lost, and the line names them.
- **Runs of older gmzoo** (no marker; ``checkpoints/<step>/config`` names a model): ``--resume``
  is accepted and marks the run (``adopted``; its ``samples/`` and ``eval/`` files stay
  unclaimed); ``--overwrite`` is refused (delete by hand, or ``touch`` the marker). Any other
  folder that is not empty is not a gmzoo run: ``--resume`` and ``--overwrite`` are refused in
  one line naming what was found, and nothing is changed.
- **Lock**: ``fcntl.flock`` on ``gmzoo-run.lock`` for the whole training, released by the kernel
  when the process dies; the file names the holder (pid, host, start, command), so a second
  train / ``--resume`` / ``--overwrite`` is refused naming it. Only process 0 of a multi-process
  run locks (the others check first and wait at a barrier). Re-entrant within one process (a
  failed ``train`` call cannot lock its own process out). The file stays after the run
  (deleting a lock file races with its next taker). flock is advisory; on NFS it may not
  exclude another host.
- **Readers** (``sample``, ``evaluate``, first stages) never lock, open checkpoints read-only
  (:class:`gmzoo.train.checkpoint.Checkpointer`) and add only their own outputs.
- **Resume** from step S keeps the metrics rows of steps <= S and moves later rows (and a line
  cut by a kill) to ``metrics.superseded.jsonl`` (appended first: a crash duplicates, never
  loses); damaged checkpoints newer than S move to ``checkpoints-damaged/``. ``config.json`` is
  gmzoo's own file in a marked run, rewritten (atomically) with the effective config of each
  session; a resume whose ``train.steps`` is below S is refused before any write.
- **I/O errors** (a full disk, ...) that stop a training become :class:`StorageError`: one line
  naming the cause and the last finished checkpoint (:func:`storage_error`).
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import fcntl
import json
import os
import re
import shlex
import shutil
import socket
import sys
from typing import Callable

from gmzoo.config import ConfigError

MARKER = "gmzoo-run.json"
LOCK = "gmzoo-run.lock"
FORMAT = 2
FILE, REGISTERED = "file", "registered"
RULES: dict[str, str | re.Pattern] = {
    "config.json": FILE, "metrics.jsonl": FILE, "metrics.superseded.jsonl": FILE,
    "loss_curve.png": FILE,
    "checkpoints": re.compile(r"\d+(\.orbax-checkpoint-tmp.*)?"),
    "checkpoints-damaged": re.compile(r"\d+(\.\d+)?"),
    "tensorboard": re.compile(r"events\.out\.tfevents\..+"),
    "feature_net": re.compile(r"feature_net_.+\.msgpack(\.tmp\d+)?"),
    "samples": REGISTERED, "eval": REGISTERED,
}
_LEFTOVER = re.compile(r"\.(gmzoo-run\.json|config\.json|metrics\.jsonl)\.tmp-\d+")  # write_json
_HELD: dict[str, "Lock"] = {}  # lock file -> this process's lock


class WorkdirInUseError(ConfigError):
    """A running training holds the workdir's lock."""


class StorageError(RuntimeError):
    """An I/O error (a full disk, ...) stopped a training."""


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _me() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": _now(),
            "command": shlex.join(sys.argv)[:300]}


def write_json(path: str, obj: object) -> None:
    """Writes ``obj`` as JSON to ``path`` atomically (a temporary file, then ``os.replace``)."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def read_marker(workdir: str) -> dict | None:
    """The marker of ``workdir`` as a format-2 dict; ``None`` without one; ``{"format": -1,
    "error": ...}`` for a marker that cannot be read or is not gmzoo's."""
    path = os.path.join(workdir, MARKER)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            text = f.read()
        m = json.loads(text) if text.strip() else {"written_by": "gmzoo", "format": 0}
    except (OSError, ValueError) as e:
        return {"format": -1, "error": f"{MARKER} cannot be read ({e})"}
    if not isinstance(m, dict) or m.get("written_by") != "gmzoo" or not isinstance(m.get("format"), int):
        return {"format": -1, "error": f"{MARKER} was not written by gmzoo"}
    if m["format"] < FORMAT:  # format 1 and a touched marker: every entry, no registered files
        m = {**m, "format": FORMAT, "entries": list(RULES), "files": []}
    return m


def _listing(workdir: str) -> list[str]:
    if not os.path.isdir(workdir):
        return []
    return sorted(n for n in os.listdir(workdir) if n != LOCK)


def _names(workdir: str, names: list[str], limit: int = 6) -> str:
    shown = [n + ("/" if os.path.isdir(os.path.join(workdir, n)) else "") for n in names[:limit]]
    return ", ".join(shown) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def legacy_steps(workdir: str) -> list[int]:
    """Steps of ``checkpoints/`` whose config item names a model: a run of an older gmzoo."""
    d, steps = os.path.join(workdir, "checkpoints"), []
    for name in (os.listdir(d) if os.path.isdir(d) else []):
        try:
            with open(os.path.join(d, name, "config", "metadata")) as f:
                cfg = json.load(f)
            if name.isdigit() and isinstance(cfg["model"]["name"], str):
                steps.append(int(name))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(steps)


def kind(workdir: str) -> str:
    """``"empty"`` (missing, empty, or only a marker), ``"marked"``, ``"legacy"`` or ``"foreign"``."""
    found = _listing(workdir)
    if not found or (found == [MARKER] and read_marker(workdir).get("format", -1) >= 0):
        return "empty"
    if MARKER in found:
        return "marked"
    return "legacy" if legacy_steps(workdir) else "foreign"


class Lock:
    """This process's ``flock`` on a workdir's lock file (see the module docstring)."""

    def __init__(self, path: str, fd: int):
        self.path, self.fd = path, fd

    @classmethod
    def acquire(cls, workdir: str) -> "Lock":
        path = os.path.realpath(os.path.join(workdir, LOCK))
        if path in _HELD:  # re-entrant within one process
            return _HELD[path]
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WorkdirInUseError(_in_use(workdir, _describe(path))) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_me()).encode())
        _HELD[path] = lock = cls(path, fd)
        return lock

    def release(self) -> None:
        if _HELD.get(self.path) is self:
            del _HELD[self.path]
            os.close(self.fd)  # closing the descriptor drops the flock


def _describe(path: str) -> str:
    try:
        with open(path) as f:
            h = json.load(f)
        return f"pid {h['pid']} on {h['host']} since {h['since']}: {h['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not written its name yet"


def _in_use(workdir: str, who: str) -> str:
    return (f"workdir {workdir} is in use by a running training ({who}); wait for it to end or "
            "stop it, then try again")


def holder(workdir: str) -> str | None:
    """Who holds ``workdir``'s lock (another process), or ``None``; creates nothing."""
    path = os.path.realpath(os.path.join(workdir, LOCK))
    if path in _HELD or not os.path.isfile(path):
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _describe(path)
    finally:
        os.close(fd)
    return None


@dataclasses.dataclass
class Workdir:
    """A prepared workdir: this process holds its lock until :meth:`release`."""

    path: str
    lock: Lock
    marked: bool  # False: a run of an older gmzoo being resumed (marked by `resumed`)

    def release(self) -> None:
        self.lock.release()

    def resumed(self, step: int, damaged: list[int], say: Callable[[str], None]) -> None:
        """After a checked restore of ``step``: marks an older run, sets the ``damaged`` steps
        newer than ``step`` aside and moves the metrics rows of later steps aside."""
        if not self.marked:
            write_json(os.path.join(self.path, MARKER), _new_marker(adopted=True))
            self.marked = True
            say(f"marked {self.path} as a gmzoo run ({MARKER}): it holds checkpoints of an older gmzoo")
        moved = set_aside(self.path, [s for s in damaged if s > step])
        if moved:
            say(f"moved damaged checkpoint {', '.join(moved)} (kept, not deleted)")
        n = supersede_metrics(os.path.join(self.path, "metrics.jsonl"), step)
        if n:
            say(f"moved {n} metrics rows logged after step {step} to metrics.superseded.jsonl")


def _new_marker(*, adopted: bool = False) -> dict:
    return {"written_by": "gmzoo", "format": FORMAT, "created": _now(), "created_by": _me(),
            "adopted": adopted, "entries": list(RULES), "files": []}


def prepare(workdir: str, *, resume: bool, overwrite: bool, act: bool = True,
            say: Callable[[str], None] = print) -> Workdir | None:
    """Checks what ``train`` may do in ``workdir`` and, with ``act``, locks it and does it: a
    fresh run is marked, ``overwrite`` deletes the marked run's own entries. Every refusal is
    one line, before anything is written; ``act=False`` only checks (the other processes)."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other; pick one")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"workdir {workdir} is a file, not a folder")
    who = holder(workdir)
    if who:
        raise WorkdirInUseError(_in_use(workdir, who))
    k, found = kind(workdir), _listing(workdir)
    what = f"it holds {_names(workdir, found)}"
    if k == "empty" and resume:
        raise ConfigError(f"--resume: {workdir} holds no run to resume"
                          f"{'' if os.path.isdir(workdir) else ' (it does not exist)'}; leave out "
                          "--resume to start one")
    if k == "foreign":
        if resume or overwrite:
            flag = "--resume" if resume else "--overwrite"
            raise ConfigError(f"{flag} acts only on a run gmzoo wrote (marked by {MARKER}), and "
                              f"{workdir} is not one: {what}; nothing was changed; pick another --workdir")
        raise ConfigError(f"workdir {workdir} already holds files and is not a gmzoo run ({what}); "
                          "pick a new or empty --workdir")
    if k == "legacy" and overwrite:
        raise ConfigError(f"--overwrite acts only on a run gmzoo wrote and marked ({MARKER}); "
                          f"{workdir} looks like a run of an older gmzoo ({what}) but has no marker, so "
                          "nothing was deleted: check it and delete it by hand, or `touch "
                          f"{os.path.join(workdir, MARKER)}` if it is all gmzoo's")
    if k in ("marked", "legacy") and not (resume or overwrite):
        raise ConfigError(f"workdir {workdir} already holds files; pass --resume to continue "
                          "the run there or --overwrite to delete it and start over")
    marker = read_marker(workdir) or {}
    if k == "marked" and overwrite and marker.get("format") != FORMAT:
        why = marker.get("error") or f"{MARKER} has format {marker.get('format')} (a newer gmzoo)"
        raise ConfigError(f"--overwrite: {why} in {workdir}; nothing was deleted: delete the run "
                          "by hand or with the gmzoo that wrote it")
    if not act:
        return None
    os.makedirs(workdir, exist_ok=True)
    lock = Lock.acquire(workdir)
    try:
        if kind(workdir) != k:  # another process got here between the check and the lock
            raise ConfigError(f"workdir {workdir} changed while this training started; try again")
        if k == "marked" and overwrite:
            deleted, left = delete_run(workdir, marker)
            line = f"--overwrite deleted the run in {workdir} ({', '.join(deleted) or 'nothing'})"
            say(line + (f" and left yours: {', '.join(left)}" if left else ""))
        if k == "empty" or overwrite:
            write_json(os.path.join(workdir, MARKER), _new_marker())
    except BaseException:
        lock.release()
        raise
    return Workdir(workdir, lock, marked=k != "legacy")


def _plain(path: str, isdir: bool) -> bool:
    return not os.path.islink(path) and (os.path.isdir(path) if isdir else os.path.isfile(path))


def _parents(p: str, top: str) -> list[str]:
    out = []
    while (p := os.path.dirname(p)) != top and p.startswith(top + os.sep):
        out.append(p)
    return out


def delete_run(workdir: str, marker: dict) -> tuple[list[str], list[str]]:
    """Deletes what ``marker`` says gmzoo wrote (``RULES``, never following a symlink) and the
    folders that leaves empty; returns ``(what was deleted, what was left)`` as relative paths."""
    deleted, left = [], []
    entries = set(marker.get("entries", ())) & set(RULES)
    owned = {os.path.normpath(p) for p in marker.get("files", [])}
    for name in _listing(workdir):
        path, rule = os.path.join(workdir, name), RULES.get(name) if name in entries else None
        if name == MARKER:
            continue
        if (rule == FILE or _LEFTOVER.fullmatch(name)) and _plain(path, isdir=False):
            os.remove(path)
            deleted.append(name)
            continue
        if rule is None or rule == FILE or not _plain(path, isdir=True):
            left.append(name)
            continue
        if rule == REGISTERED:
            doomed = [os.path.join(workdir, r) for r in owned if r.split(os.sep)[0] == name]
            doomed = [p for p in doomed if _plain(p, isdir=False)]
        else:
            doomed = [os.path.join(path, c) for c in os.listdir(path) if rule.fullmatch(c)]
        doomed = [p for p in doomed if not os.path.islink(p)]  # a symlink is the user's
        for p in doomed:
            shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
        parents = {path} | {d for p in doomed for d in _parents(p, path)}
        for d in sorted(parents, key=len, reverse=True):  # only folders emptied here
            if os.path.isdir(d) and not os.listdir(d):
                os.rmdir(d)
        if doomed:
            deleted.append(name + "/")
        if os.path.isdir(path):
            left += sorted(os.path.join(name, c) for c in os.listdir(path))
    return deleted, left


def register(workdir: str, path: str) -> None:
    """Records that gmzoo wrote ``path`` (a file under ``workdir/samples`` or ``workdir/eval``)
    in the marker, so ``--overwrite`` deletes it; a no-op anywhere else or without a marker."""
    workdir = os.path.abspath(workdir)
    rel = os.path.relpath(os.path.abspath(path), workdir)
    if rel.split(os.sep)[0] not in ("samples", "eval") or not os.path.isfile(os.path.join(workdir, MARKER)):
        return
    fd = os.open(workdir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # one marker update at a time (a training and readers)
        m = read_marker(workdir)
        if m and m.get("format") == FORMAT and rel not in m["files"]:
            write_json(os.path.join(workdir, MARKER), {**m, "files": [*m["files"], rel]})
    finally:
        os.close(fd)  # drops the flock


def supersede_metrics(path: str, step: int) -> int:
    """Moves the rows of ``path`` logged after ``step`` (and lines that do not parse, such as a
    row cut by a kill) to ``metrics.superseded.jsonl`` beside it; returns how many."""
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        lines = [line if line.endswith("\n") else line + "\n" for line in f if line.strip()]

    def kept(line: str) -> bool:
        try:
            return int(json.loads(line)["step"]) <= step
        except (ValueError, KeyError, TypeError):
            return False

    later = [line for line in lines if not kept(line)]
    if later:
        with open(os.path.join(os.path.dirname(path), "metrics.superseded.jsonl"), "a") as f:
            f.writelines(later)
            f.flush()
            os.fsync(f.fileno())
        tmp = os.path.join(os.path.dirname(path), f".metrics.jsonl.tmp-{os.getpid()}")
        with open(tmp, "w") as f:
            f.writelines(line for line in lines if kept(line))
        os.replace(tmp, path)
    return len(later)


def set_aside(workdir: str, steps: list[int]) -> list[str]:
    """Moves checkpoint ``steps`` to ``checkpoints-damaged/`` (``<step>`` or ``<step>.<n>``)."""
    moved = []
    for s in steps:
        src = os.path.join(workdir, "checkpoints", str(s))
        if not os.path.isdir(src):
            continue
        dest_dir = os.path.join(workdir, "checkpoints-damaged")
        os.makedirs(dest_dir, exist_ok=True)
        dest, n = os.path.join(dest_dir, str(s)), 1
        while os.path.exists(dest):
            dest, n = os.path.join(dest_dir, f"{s}.{n}"), n + 1
        os.rename(src, dest)
        moved.append(f"step {s} to {dest}")
    return moved


def finished_steps(ckpt_dir: str) -> list[int]:
    """Steps whose checkpoint folder was finished (orbax renames it when complete)."""
    names = os.listdir(ckpt_dir) if os.path.isdir(ckpt_dir) else []
    return sorted(int(n) for n in names if n.isdigit() and os.path.isdir(os.path.join(ckpt_dir, n)))


def io_cause(exc: BaseException) -> str | None:
    """The I/O cause of ``exc`` in one phrase (an ``OSError`` anywhere in its chain, or orbax /
    TensorStore's ``[os_error_code='N']``), or ``None`` when it is not an I/O error."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno is not None:
            return (e.strerror or os.strerror(e.errno)) + _where(e.filename)
        m = re.search(r"os_error_code='(\d+)'", str(e))
        if m:
            f = re.search(r'Failed (?:writing|to write)[^"]*"([^"]+)"', str(e))
            return os.strerror(int(m.group(1))) + _where(f.group(1) if f else None)
        todo += [e.__cause__, e.__context__, *getattr(e, "exceptions", ())]
    return None


def _where(path: object) -> str:
    """`` (PATH)``, or `` (writing checkpoint step N in DIR)`` for a file of an unfinished save."""
    if not path:
        return ""
    m = re.match(r"(.*)/(\d+)\.orbax-checkpoint-tmp", str(path))
    return f" (writing checkpoint step {m.group(2)} in {m.group(1)})" if m else f" ({path})"


def storage_error(exc: BaseException, ckpt_dir: str, step: int) -> StorageError | None:
    """A one-line :class:`StorageError` for an I/O error that stopped a training at ``step``,
    naming the cause and the last finished checkpoint; ``None`` if ``exc`` is not one."""
    cause = io_cause(exc)
    if cause is None:
        return None
    done = finished_steps(ckpt_dir)
    last = (f"the last finished checkpoint is step {done[-1]} in {ckpt_dir} (intact)" if done
            else f"no checkpoint was finished in {ckpt_dir}")
    fix = "free some space" if os.strerror(errno.ENOSPC) in cause else "fix the cause"
    return StorageError(f"{cause}: training stopped at step {step}; {last}; {fix}, then run the "
                        "same command with --resume")


def quietly(close: Callable[[], None]) -> None:
    """Calls ``close``, ignoring an ``OSError`` (on the way out of a failure: a full disk)."""
    try:
        close()
    except OSError:
        pass


def busy_hint(workdir: str) -> str:
    """``"; a training (pid ...) is still writing there"`` when one holds the lock, else ``""``."""
    who = holder(workdir)
    return f"; a training is still writing there ({who})" if who else ""
