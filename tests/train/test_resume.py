"""Checkpoint and resume: a run killed with SIGKILL at a random step and resumed ends with
parameters bit-identical to an uninterrupted run of the same length."""

import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from gmzoo.zoo import load_run

ARGS = ["vae", "--set", "data.name=digits", "--set", "model.hidden=(32,)",
        "--set", "model.latent_dim=4", "--set", "train.batch_size=16",
        "--set", "train.steps=150", "--set", "train.checkpoint_every=10",
        "--set", "train.log_every=10", "--set", "train.eval_every=0",
        "--set", "train.sample_every=0", "--set", "train.progress_bar=false",
        "--set", "train.keep_checkpoints=2"]


def _gmzoo(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "gmzoo.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def _checkpoint_steps(workdir):
    d = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(d):
        return []
    return sorted(int(n) for n in os.listdir(d) if n.isdigit())


def _params(workdir):
    _, state = load_run(workdir)
    return jax.tree.map(np.asarray, jax.device_get((state.params, state.ema_params, state.opt_state)))


def test_sigkill_at_random_step_then_resume_is_bit_identical(tmp_path):
    full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
    proc = _gmzoo("train", *ARGS, "--workdir", full)
    rng = random.Random(time.time_ns())
    victim = _gmzoo("train", *ARGS, "--workdir", killed)
    # Wait for the first finished checkpoint, then kill at a random moment after it.
    deadline = time.time() + 120
    while not _checkpoint_steps(killed) and time.time() < deadline and victim.poll() is None:
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 0.6))
    victim.send_signal(signal.SIGKILL)
    out, _ = victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL, f"the run ended before it was killed:\n{out}"
    at = _checkpoint_steps(killed)
    assert at and at[-1] < 150, f"killed after the last step ({at}); nothing to resume"

    resumed = _gmzoo("train", *ARGS, "--workdir", killed, "--resume")
    out_r, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, out_r
    assert f"resumed from step {at[-1]}" in out_r
    out_f, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out_f

    a, b = _params(full), _params(killed)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    # The log of the resumed run holds each step once.
    with open(os.path.join(killed, "metrics.jsonl")) as f:
        steps = [int(line.split('"step": ')[1].split(",")[0]) for line in f]
    assert steps == sorted(set(steps)), steps


def test_resume_refuses_a_changed_config(tmp_path, tiny):
    from gmzoo.config import ConfigError, override
    from gmzoo.zoo import train

    workdir = str(tmp_path / "run")
    cfg = tiny()
    train(cfg, workdir, verbose=False)
    with pytest.raises(ConfigError, match="optim.learning_rate"):
        train(override(cfg, ["optim.learning_rate=0.5"]), workdir, resume=True, verbose=False)
    # Extending the run is allowed and continues from the checkpoint.
    state = train(override(cfg, ["train.steps=9", "train.checkpoint_every=3"]), workdir,
                  resume=True, verbose=False)
    assert int(jax.device_get(state.step)) == 9
