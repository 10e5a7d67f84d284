"""Workdirs never lose a user's files: --overwrite and --resume act only on folders gmzoo wrote
(its marker), --overwrite deletes only what gmzoo writes, a resume keeps every logged row, and
readers (sample, evaluate) change nothing in a workdir that may still be training."""

import json
import os

import pytest

from gmzoo import zoo
from gmzoo.config import ConfigError
from gmzoo.train import loop

FAST = ["train.steps=2", "train.checkpoint_every=1", "train.log_every=1"]


def user_folder(path):
    """A folder of the user's that looks like a run by names alone."""
    os.makedirs(os.path.join(path, "src"))
    for name, text in (("config.json", '{"mine": 1}'), ("metrics.jsonl", '{"step": 7}\n'),
                       (os.path.join("src", "model.py"), "print('mine')\n")):
        with open(os.path.join(path, name), "w") as f:
            f.write(text)
    os.makedirs(os.path.join(path, "checkpoints"))
    return {n: open(os.path.join(path, n)).read() for n in ("config.json", "metrics.jsonl",
                                                            os.path.join("src", "model.py"))}


@pytest.mark.parametrize("flag", ["overwrite", "resume"])
def test_a_folder_gmzoo_did_not_write_is_refused_and_untouched(flag, tiny, tmp_path):
    wd = str(tmp_path / "mine")
    before = user_folder(wd)
    with pytest.raises(ConfigError) as e:
        zoo.train(tiny("vae", FAST), wd, verbose=False, **{flag: True})
    assert "acts only on a run gmzoo wrote" in str(e.value) and "\n" not in str(e.value)
    assert {n: open(os.path.join(wd, n)).read() for n in before} == before
    assert sorted(os.listdir(wd)) == ["checkpoints", "config.json", "metrics.jsonl", "src"]


def test_overwrite_deletes_only_what_gmzoo_wrote(tiny, tmp_path, capsys):
    wd = str(tmp_path / "run")
    zoo.train(tiny("vae", FAST), wd, verbose=False)
    assert loop.is_run(wd)
    with open(os.path.join(wd, "notes.txt"), "w") as f:
        f.write("my notes")
    zoo.train(tiny("vae", FAST + ["train.seed=1"]), wd, overwrite=True, verbose=False)
    assert open(os.path.join(wd, "notes.txt")).read() == "my notes"
    assert "left yours: notes.txt" in capsys.readouterr().out
    saved = json.load(open(os.path.join(wd, "config.json")))
    assert saved["train"]["seed"] == 1  # the new run's


def test_resume_moves_later_rows_aside_and_deletes_none(tiny, tmp_path):
    wd = str(tmp_path / "run")
    zoo.train(tiny("vae", FAST), wd, verbose=False)
    log = os.path.join(wd, "metrics.jsonl")
    rows = [json.loads(line) for line in open(log)]
    extra = {"step": 99, "split": "train", "loss": 1.0}  # a row past the last checkpoint
    with open(log, "a") as f:
        f.write(json.dumps(extra) + "\n")
    zoo.train(tiny("vae", FAST), wd, resume=True, verbose=False)
    kept = [json.loads(line) for line in open(log)]
    assert kept[:len(rows)] == rows and extra not in kept
    moved = [json.loads(line) for line in open(os.path.join(wd, "metrics.superseded.jsonl"))]
    assert moved == [extra]


def test_readers_leave_a_checkpoint_being_written_alone(tiny, tmp_path):
    """An unfinished save (orbax's tmp folder) survives `load_run`: a writer's manager would
    have removed it, and with it the checkpoint a running training is writing."""
    wd = str(tmp_path / "run")
    zoo.train(tiny("vae", FAST), wd, verbose=False)
    tmp = os.path.join(wd, "checkpoints", "3.orbax-checkpoint-tmp-123")
    os.makedirs(os.path.join(tmp, "state"))
    listing = sorted(os.listdir(os.path.join(wd, "checkpoints")))
    run, state = zoo.load(wd)
    assert int(state.step) == 2
    assert os.path.isdir(tmp) and sorted(os.listdir(os.path.join(wd, "checkpoints"))) == listing
