"""Workdirs never lose a user's data: --overwrite and --resume act only on runs gmzoo wrote and
touch only what gmzoo wrote there; a resume keeps every logged row and skips a damaged
checkpoint; a running training holds a lock, and readers (sample, evaluate) change nothing in
it; a damaged checkpoint, a full disk or a second process end in one line and a fallback.

Each test reproduces one failure of the issue on the code before gmzoo.train.workdir."""

import errno
import json
import os
import shutil
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from gmzoo import cli, zoo
from gmzoo.config import ConfigError
from gmzoo.train import checkpoint, workdir
from gmzoo.train.checkpoint import CheckpointError, Checkpointer

BASE = ["data.name=digits", "model.hidden=(32,)", "model.latent_dim=4", "train.batch_size=16",
        "train.steps=6", "train.checkpoint_every=2", "train.log_every=1", "train.eval_every=0",
        "train.sample_every=0", "train.progress_bar=false", "train.keep_checkpoints=3"]
CLI = [a for kv in BASE for a in ("--set", kv)]


def cfg(*extra):
    return zoo.config("vae", BASE + list(extra))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run (checkpoints 2, 4, 6; a metrics row per step), copied by each test."""
    wd = str(tmp_path_factory.mktemp("base") / "run")
    zoo.train(cfg(), wd, verbose=False)
    return wd


@pytest.fixture
def run(trained, tmp_path):
    wd = str(tmp_path / "run")
    shutil.copytree(trained, wd)
    return wd


def snapshot(path):
    """Every file under ``path`` with its bytes (but the lock, which names its last holder)."""
    out = {}
    for root, _, files in os.walk(path):
        for f in set(files) - {workdir.LOCK}:
            p = os.path.join(root, f)
            out[os.path.relpath(p, path)] = open(p, "rb").read()
    return out


def damage(wd, step):
    """Truncates every data file of checkpoint ``step``'s state."""
    d = os.path.join(wd, "checkpoints", str(step), "state", "ocdbt.process_0", "d")
    for f in os.listdir(d):
        os.truncate(os.path.join(d, f), 10)


def one_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def user_folder(path):
    """A folder of the user's that looks like a run by names alone."""
    os.makedirs(os.path.join(path, "src"))
    os.makedirs(os.path.join(path, "checkpoints"))
    for name, text in (("config.json", '{"mine": 1}'), ("metrics.jsonl", '{"step": 7}\n'),
                       (os.path.join("src", "model.py"), "print('mine')\n")):
        with open(os.path.join(path, name), "w") as f:
            f.write(text)
    return snapshot(path)


@pytest.mark.parametrize("flag", ["overwrite", "resume", None])
def test_a_folder_gmzoo_did_not_write_is_refused_and_untouched(flag, tmp_path):
    # Before: --overwrite deleted it all (it holds config.json and checkpoints/); --resume
    # rewrote config.json, emptied metrics.jsonl and exited 0.
    wd = str(tmp_path / "mine")
    before = user_folder(wd)
    with pytest.raises(ConfigError) as e:
        zoo.train(cfg(), wd, verbose=False, **({flag: True} if flag else {}))
    msg = str(e.value)
    assert "\n" not in msg and "src/" in msg and "config.json" in msg
    assert ("acts only on a run gmzoo wrote" if flag else "is not a gmzoo run") in msg
    assert snapshot(wd) == before and sorted(os.listdir(wd)) == ["checkpoints", "config.json",
                                                                   "metrics.jsonl", "src"]


def test_overwrite_deletes_only_what_gmzoo_wrote(run, tmp_path, capsys):
    # Before: the whole folder went (a user's src/ with it), or all of samples/.
    cli.main(["sample", "--workdir", run, "--n", "4"])  # gmzoo's file, registered
    assert "samples/sample_seed0.png" in workdir.read_marker(run)["files"]
    mine = {"notes.txt": b"my notes", os.path.join("src", "main.py"): b"code",
            os.path.join("samples", "mine.png"): b"my figure",
            os.path.join("checkpoints", "README"): b"my readme"}
    for rel, data in mine.items():
        os.makedirs(os.path.dirname(os.path.join(run, rel)), exist_ok=True)
        open(os.path.join(run, rel), "wb").write(data)
    capsys.readouterr()
    zoo.train(cfg("train.seed=1", "train.steps=2"), run, overwrite=True)
    out = capsys.readouterr().out
    assert all(open(os.path.join(run, rel), "rb").read() == d for rel, d in mine.items())
    assert not os.path.exists(os.path.join(run, "samples", "sample_seed0.png"))
    line = next(line for line in out.splitlines() if line.startswith("--overwrite deleted"))
    assert "left yours: checkpoints/README, notes.txt, samples/mine.png, src" in line, line
    assert json.load(open(os.path.join(run, "config.json")))["train"]["seed"] == 1
    with Checkpointer(os.path.join(run, "checkpoints"), read_only=True) as c:
        assert c.all_steps() == [2]


def test_a_run_of_an_older_gmzoo_is_resumed_but_never_overwritten(run, capsys):
    os.remove(os.path.join(run, workdir.MARKER))
    before = snapshot(run)
    with pytest.raises(ConfigError, match="older gmzoo.*delete it by hand") as e:
        zoo.train(cfg(), run, overwrite=True, verbose=False)
    assert "\n" not in str(e.value) and snapshot(run) == before
    state = zoo.train(cfg("train.steps=8"), run, resume=True)
    assert int(jax.device_get(state.step)) == 8
    assert workdir.read_marker(run)["adopted"] is True
    assert "marked" in capsys.readouterr().out


def test_resume_without_a_checkpoint_says_so_and_changes_nothing(run):
    # Before: it silently restarted at step 0 and emptied metrics.jsonl.
    for s in ("2", "4", "6"):
        shutil.rmtree(os.path.join(run, "checkpoints", s))
    before = snapshot(run)
    with pytest.raises(ConfigError, match="holds no finished checkpoint to resume from"):
        zoo.train(cfg(), run, resume=True, verbose=False)
    assert snapshot(run) == before


def test_resume_skips_a_damaged_checkpoint_and_keeps_every_row(trained, run, capsys):
    # Before: a 300-line traceback; and rows after the checkpoint were deleted.
    damage(run, 6)
    rows = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
    state = zoo.train(cfg(), run, resume=True)
    out, err = capsys.readouterr()
    assert one_line(err).startswith(f"gmzoo: checkpoint step 6 in {run}/checkpoints is damaged (")
    assert err.rstrip().endswith("using step 4")
    assert "resumed from step 4" in out and "metrics.superseded.jsonl" in out
    assert os.listdir(os.path.join(run, "checkpoints-damaged")) == ["6"]  # kept aside
    moved = [json.loads(line) for line in open(os.path.join(run, "metrics.superseded.jsonl"))]
    assert moved == [r for r in rows if r["step"] > 4]
    now = [json.loads(line)["step"] for line in open(os.path.join(run, "metrics.jsonl"))]
    assert now == [1, 2, 3, 4, 5, 6]
    # The resumed run ends where the undamaged one did, to the bit.
    _, ref = zoo.load(trained)
    for a, b in zip(jax.tree.leaves(ref.params), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_resume_with_fewer_steps_is_refused_before_any_write(run):
    # Before: it rewrote config.json with train.steps=3 and exited 0.
    before = snapshot(run)
    with pytest.raises(ConfigError, match="train.steps=3 is below step 6"):
        zoo.train(cfg("train.steps=3"), run, resume=True, verbose=False)
    assert snapshot(run) == before


def test_sample_falls_back_past_a_damaged_checkpoint_and_step_picks_one(run, tmp_path, capsys,
                                                                       refused):
    damage(run, 6)
    out = str(tmp_path / "a.png")
    cli.main(["sample", "--workdir", run, "--n", "4", "--out", out])
    line = one_line(capsys.readouterr().err)
    assert "checkpoint step 6" in line and "damaged" in line and line.endswith("using step 4")
    cli.main(["sample", "--workdir", run, "--n", "4", "--step", "2", "--out", str(tmp_path / "b.png")])
    assert os.path.getsize(tmp_path / "b.png") > 0 and capsys.readouterr().err == ""
    refused(["sample", "--workdir", run, "--step", "5"], "step 5 is not in", "steps 2, 4, 6")
    refused(["evaluate", "--workdir", run, "--step", "5"], "step 5 is not in", "steps 2, 4, 6")
    with pytest.raises(SystemExit) as e:
        cli.main(["sample", "--workdir", run, "--step", "6", "--out", str(tmp_path / "c.png")])
    assert e.value.code == 1
    assert "step 6" in one_line(capsys.readouterr().err) and not os.path.exists(tmp_path / "c.png")


@pytest.mark.parametrize("steps", ["0", "-2"])
def test_sample_steps_must_be_positive(steps, refused, no_compute, run):
    # Before: --steps 0 silently meant the model's default.
    refused(["sample", "--workdir", run, "--steps", steps], f"--steps={steps} must be a positive")


def test_a_full_disk_during_training_ends_in_one_line(tmp_path, monkeypatch, capsys):
    # Before: 637 lines of traceback and no cause.
    save, calls = Checkpointer.save, []

    def full(self, step, *a, **k):
        calls.append(step)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return save(self, step, *a, **k)

    monkeypatch.setattr(Checkpointer, "save", full)
    wd = str(tmp_path / "run")
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "vae", "--workdir", wd, *CLI])
    assert e.value.code == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("gmzoo: stopped: No space left on device: training stopped at step 4")
    assert f"last finished checkpoint is step 2 in {wd}/checkpoints (intact)" in line


def test_a_full_tmpfs_ends_in_one_line(tmp_path, capfd):
    """A real full disk under checkpoints/ (a 1 MB tmpfs): orbax's background save fails, and
    no wall of orbax logs follows the one line."""
    wd, keep = str(tmp_path / "run"), str(tmp_path / "keep")
    big = ["model.hidden=(128,)", "train.keep_checkpoints=20"]
    zoo.train(cfg(*big, "train.steps=2"), wd, verbose=False)
    ckpts = os.path.join(wd, "checkpoints")
    shutil.move(os.path.join(ckpts, "2"), keep)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", ckpts],
                      capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        shutil.copytree(keep, os.path.join(ckpts, "2"))
        capfd.readouterr()
        with pytest.raises(SystemExit) as e:
            cli.main(["train", "vae", "--workdir", wd, "--resume", *CLI,
                      *(a for kv in big for a in ("--set", kv)), "--set", "train.steps=40"])
        assert e.value.code == 1
        line = one_line(capfd.readouterr().err)
        # orbax fails in its background commit ("(writing checkpoint step N)") or, when the
        # disk fills sooner, in the save call itself ("training stopped at step N"): one line
        assert line.startswith("gmzoo: stopped: No space left on device")
        assert "the last finished checkpoint is step " in line and "--resume" in line
        done = workdir.finished_steps(ckpts)
        assert f"step {done[-1]} in {ckpts} (intact)" in line
    finally:
        subprocess.run(["umount", ckpts], check=False)


def test_a_running_training_is_locked_and_readers_leave_it_alone(tmp_path, refused, capsys):
    # Before: a second --resume / --overwrite mixed or crashed the runs; a reader's manager
    # deleted the checkpoint being written.
    wd = str(tmp_path / "live")
    args = [*CLI, "--set", "train.steps=100", "--set", "train.keep_checkpoints=1000"]
    proc = subprocess.Popen([sys.executable, "-m", "gmzoo.cli", "train", "vae", "--workdir", wd,
                             *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while not workdir.finished_steps(os.path.join(wd, "checkpoints")) and time.time() < deadline:
            assert proc.poll() is None, proc.communicate()[0]
            time.sleep(0.05)
        for flags in (["--resume"], ["--overwrite"], []):
            line = refused(["train", "vae", "--workdir", wd, *args, *flags], "in use by a running training",
                           f"pid {proc.pid}")
            assert "gmzoo" in line.split(f"pid {proc.pid}", 1)[1]
        assert proc.poll() is None, "the training ended before the second ones were refused"
        cli.main(["sample", "--workdir", wd, "--n", "4"])
        reads = 0
        while proc.poll() is None:  # read it while it writes, until it ends
            with Checkpointer(os.path.join(wd, "checkpoints"), read_only=True) as c:
                c.all_steps()
            if reads % 10 == 0:
                zoo.load(wd)
            reads += 1
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert reads > 0
    assert os.listdir(os.path.join(wd, "checkpoints")) and sorted(
        os.listdir(os.path.join(wd, "checkpoints")), key=int) == [str(s) for s in range(2, 101, 2)]
    steps = [json.loads(line)["step"] for line in open(os.path.join(wd, "metrics.jsonl"))]
    assert steps == list(range(1, 101))
    assert workdir.holder(wd) is None  # released when it ended


def test_a_first_stage_without_a_checkpoint_is_refused_in_one_line(tmp_path):
    # Before: the one-line refusal was followed by a 40-line orbax traceback at exit.
    stage = tmp_path / "ae"
    (stage / "checkpoints").mkdir(parents=True)
    r = subprocess.run([sys.executable, "-m", "gmzoo.cli", "train", "latent_ddpm", "--workdir",
                        str(tmp_path / "ldm"), "--set", f"model.autoencoder={stage}",
                        "--set", "data.name=digits"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert one_line(r.stderr) == f"gmzoo: error: {stage}/checkpoints holds no finished checkpoint"


def test_readers_leave_a_checkpoint_being_written_alone(run):
    """An unfinished save (orbax's tmp folder) survives ``load_run``: a writer's manager would
    have removed it, and with it the checkpoint a running training is writing."""
    tmp = os.path.join(run, "checkpoints", "8.orbax-checkpoint-tmp-123")
    os.makedirs(os.path.join(tmp, "state"))
    before = snapshot(run), sorted(os.listdir(os.path.join(run, "checkpoints")))
    _, state = zoo.load(run)
    assert int(state.step) == 6 and os.path.isdir(tmp)
    assert (snapshot(run), sorted(os.listdir(os.path.join(run, "checkpoints")))) == before


def test_superseded_rows_include_a_line_cut_by_a_kill(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    rows = [json.dumps({"step": s, "split": "train", "loss": 1.0 / s}) for s in (1, 2, 3, 4)]
    with open(path, "w") as f:
        f.write("\n".join(rows) + '\n{"step": 5, "spl')  # the last row cut mid-write
    assert workdir.supersede_metrics(path, 2) == 3
    assert open(path).read().splitlines() == rows[:2]
    assert open(tmp_path / "metrics.superseded.jsonl").read().splitlines() == rows[2:] + ['{"step": 5, "spl']
    assert workdir.supersede_metrics(path, 2) == 0  # nothing more to move


def test_io_cause_reads_orbax_and_tensorstore_errors():
    inner = ValueError('RESOURCE_EXHAUSTED: Error writing "x/0": Failed writing: "/d/6.orbax-'
                       "checkpoint-tmp/f\": Failed to write 48590 bytes: No space left on device "
                       "[os_error_code='28']")
    try:
        try:
            raise inner
        except ValueError as e:
            raise RuntimeError("Save Finalize thread failed") from e
    except RuntimeError as e:
        outer = e
    assert workdir.io_cause(outer) == "No space left on device (writing checkpoint step 6 in /d)"
    assert workdir.io_cause(OSError(errno.EACCES, "Permission denied", "/x")) == "Permission denied (/x)"
    assert workdir.io_cause(ValueError("a shape mismatch")) is None
    assert isinstance(CheckpointError("x"), RuntimeError) and checkpoint.Restored
