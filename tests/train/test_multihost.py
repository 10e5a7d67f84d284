"""Two processes (``jax.distributed`` on localhost, 2 CPU devices each) train what one process
with 4 devices trains: the same parameters, each process fed only its half of every batch.

Each process is ``_multihost_worker.py``; both train into the SAME workdir (orbax saves are
collective) and then restore that checkpoint. Every subprocess has a timeout and the whole
group is killed as soon as one fails, so the test cannot hang on a collective.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_multihost_worker.py")
TIMEOUT = 150  # seconds, for the whole group of processes

TINY = [
    "data.name=digits", "model.hidden=(32,)", "model.latent_dim=4", "train.steps=6",
    "train.batch_size=16", "train.log_every=3", "train.eval_every=0", "train.sample_every=0",
    "train.checkpoint_every=6", "train.progress_bar=false",
    "optim.warmup_steps=0",  # full learning rate from step 1: the parameters really move
]
GLOBAL_BATCH = 16


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)  # the worker sets its own device count
    env.pop("JAX_NUM_CPU_DEVICES", None)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the worker's own session (start_new_session)
        except ProcessLookupError:
            pass
        proc.wait()


def _run_group(jobs: dict[str, list[str]], logdir: Path, timeout: float = TIMEOUT) -> None:
    """Starts every job at once; fails (killing the rest) as soon as one fails or time runs out."""
    procs, logs = {}, {}
    try:
        for name, argv in jobs.items():
            logs[name] = open(logdir / f"{name}.log", "w")
            procs[name] = subprocess.Popen([sys.executable, str(WORKER), *argv], cwd=REPO,
                                           env=_env(), stdout=logs[name],
                                           stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        failed = None
        while time.monotonic() < deadline:
            codes = {n: p.poll() for n, p in procs.items()}
            failed = next((n for n, c in codes.items() if c not in (None, 0)), None)
            if failed or all(c == 0 for c in codes.values()):
                break
            time.sleep(0.2)
        else:
            failed = "timeout"
    finally:
        for p in procs.values():
            _kill(p)
        for f in logs.values():
            f.close()
    if failed:
        tails = "\n".join(f"--- {n} ---\n" + (logdir / f"{n}.log").read_text()[-3000:]
                          for n in jobs)
        pytest.fail(f"worker group failed ({failed}; timeout {timeout}s):\n{tails}")


def _load(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "info"}
        info = json.loads(str(z["info"]))
    return info, arrays


def _assert_close(a: dict, b: dict, prefix: str, what: str, **tol) -> None:
    keys = sorted(k for k in a if k.startswith(prefix + "["))
    assert keys and keys == sorted(k for k in b if k.startswith(prefix + "[")), what
    for k in keys:
        np.testing.assert_allclose(a[k], b[k], err_msg=f"{what}: {k}", **tol)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Runs the two-process job and the one-process reference (concurrently); loads results."""
    tmp = tmp_path_factory.mktemp("multihost")
    port = _free_port()
    shared = tmp / "two_processes"
    jobs = {
        f"proc{i}": ["--workdir", str(shared), "--out", str(tmp / f"proc{i}.npz"),
                     "--local-devices", "2", "--num-processes", "2", "--process-id", str(i),
                     "--port", str(port), "--", *TINY]
        for i in range(2)
    }
    jobs["single"] = ["--workdir", str(tmp / "one_process"), "--out", str(tmp / "single.npz"),
                      "--local-devices", "4", "--", *TINY]
    start = time.monotonic()
    _run_group(jobs, tmp)
    results = {name: _load(tmp / f"{name}.npz") for name in jobs}
    return {"tmp": tmp, "shared": shared, "single_dir": tmp / "one_process",
            "results": results, "seconds": time.monotonic() - start}


def test_two_processes_see_four_devices_and_feed_their_own_rows(runs):
    for i in range(2):
        info, _ = runs["results"][f"proc{i}"]
        assert info["process_index"] == i and info["process_count"] == 2
        assert info["device_count"] == 4 and info["local_device_count"] == 2
        assert len(info["placed"]) == 6  # steps_per_call=1: one placed stack per step
        half = GLOBAL_BATCH // 2
        for placed in info["placed"]:
            for name, p in placed.items():
                assert p["local_shape"][:2] == [1, half], (name, p)
                assert p["global_shape"][:2] == [1, GLOBAL_BATCH], (name, p)
                assert p["num_devices"] == 4, (name, p)
                # two local devices, a quarter of the global batch each, in this process's half
                assert [s[:2] for s in p["addressable_shard_shapes"]] == [[1, 4], [1, 4]]
                assert p["addressable_rows"] == [[i * half, i * half + 4],
                                                 [i * half + 4, (i + 1) * half]], (name, p)
                assert p["local_equals_placed"], (name, p)
    info, _ = runs["results"]["single"]
    assert info["process_count"] == 1 and info["device_count"] == 4
    assert all(p["image"]["num_devices"] == 4 and len(p["image"]["addressable_shard_shapes"]) == 4
               for p in info["placed"])


def test_two_processes_hold_identical_parameters(runs):
    _, a = runs["results"]["proc0"]
    _, b = runs["results"]["proc1"]
    assert int(a["step"]) == int(b["step"]) == 6
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_two_processes_match_one_process_with_four_devices(runs):
    _, multi = runs["results"]["proc0"]
    _, single = runs["results"]["single"]
    assert int(single["step"]) == 6
    tol = dict(rtol=1e-5, atol=1e-6)
    _assert_close(multi, single, "params", "2x2 devices vs 1x4 devices, params", **tol)
    _assert_close(multi, single, "ema_params", "2x2 devices vs 1x4 devices, EMA", **tol)
    # the parameters moved: the comparison is not between two untouched initialisations
    _assert_close(multi, single, "init_params", "initial params", rtol=0, atol=0)
    moved = max(float(np.max(np.abs(multi[k] - multi["init_" + k])))
                for k in multi if k.startswith("params["))
    assert moved > 1e-3


def test_shared_workdir_checkpoint_and_logs(runs):
    shared, single_dir = runs["shared"], runs["single_dir"]
    steps = sorted(p.name for p in (shared / "checkpoints").iterdir())
    assert steps == ["6"], steps  # one finished checkpoint, no leftover tmp folder
    # both processes restored the checkpoint they saved together: exactly the final state
    for i in range(2):
        _, a = runs["results"][f"proc{i}"]
        for k in [k for k in a if k.startswith(("params[", "ema_params["))]:
            np.testing.assert_array_equal(a["restored_" + k], a[k], err_msg=k)
    # only process 0 logs; its loss curve matches the one-process run
    rows = [json.loads(l) for l in (shared / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(l) for l in (single_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [r["step"] for r in ref] == [3, 6]
    for r, s in zip(rows, ref):
        for key in ("loss", "grad_norm"):
            np.testing.assert_allclose(r[key], s[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert (shared / "loss_curve.png").exists() and (shared / "config.json").exists()
    assert runs["seconds"] < TIMEOUT
