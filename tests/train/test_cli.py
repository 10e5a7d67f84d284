"""The command line refuses bad input with one line, before any compute, and never overwrites."""

import json
import os

import numpy as np
import pytest

from gmzoo import cli

TINY = ["--set", "data.name=digits", "--set", "model.hidden=(32,)", "--set", "model.latent_dim=4",
        "--set", "train.batch_size=16", "--set", "train.steps=4", "--set", "train.log_every=2",
        "--set", "train.eval_every=2", "--set", "train.sample_every=4",
        "--set", "train.checkpoint_every=2", "--set", "train.progress_bar=false",
        "--set", "eval.iwae_k=4", "--set", "eval.num_samples=50",
        # FD / KID's feature net: 20 steps, not digits' 400 (the report's lines are checked here,
        # not the net's accuracy: tests/metrics/test_metrics_classifier*.py check that), so no
        # real compute is left and the test compiles unoptimised like the rest of the suite.
        "--set", "eval.feature_net_steps=20"]


def test_unknown_model_lists_models(refused, capsys, no_compute):
    refused(["train", "vea"], "unknown model 'vea'", "Did you mean 'vae'", "conv_vae")


def test_misspelled_key_suggests(refused, capsys, no_compute, tmp_path):
    refused(["train", "vae", "--workdir", str(tmp_path / "w"), "--set",
                      "optim.learning_rat=1e-3"], "Did you mean 'optim.learning_rate'")


def test_unknown_dataset_lists_datasets(refused, capsys, no_compute, tmp_path):
    refused(["train", "vae", "--workdir", str(tmp_path / "w"), "--set",
                      "data.name=digitz"], "digitz", "digits", "mnist5k")


@pytest.mark.parametrize("setting,fragment", [
    ("optim.learning_rate=-0.1", "optim.learning_rate=-0.1 must be > 0"),
    ("train.batch_size=5000", "larger than the digits training split"),
    ("model.likelihood=gaussian", "model.likelihood=gaussian models data with"),
    ("train.compute_dtype=float16", "choose one of float32, bfloat16"),
    ("train.steps=ten", "expected an integer"),
])
def test_bad_values_are_refused(refused, capsys, no_compute, tmp_path, setting, fragment):
    refused(["train", "vae", "--workdir", str(tmp_path / "w"), *TINY[:2], "--set", setting],
             fragment)
    assert not os.path.exists(tmp_path / "w")


def test_image_shape_the_model_cannot_take(refused, capsys, no_compute, tmp_path):
    # Three stride-2 stages need H, W divisible by 8: 28x28 MNIST cannot go through.
    refused(["train", "conv_vae", "--workdir", str(tmp_path / "w"),
                      "--set", "model.hidden=(4,8,16)"], "do not fit model conv_vae")


def test_train_sample_evaluate_and_no_overwrite(refused, capsys, tmp_path, monkeypatch):
    nets = tmp_path / "nets"  # GMZOO_FEATURE_NET_DIR: feature nets shared by every run
    monkeypatch.setenv("GMZOO_FEATURE_NET_DIR", str(nets))
    workdir = str(tmp_path / "run")
    cli.main(["train", "vae", "--workdir", workdir, *TINY])
    out = capsys.readouterr().out
    assert "checkpoints" in out and workdir in out
    for name in ("metrics.jsonl", "config.json", "loss_curve.png", "samples/step_0000004.png"):
        assert os.path.exists(os.path.join(workdir, name)), name
    rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    assert {r["split"] for r in rows} == {"train", "eval"}
    assert all(np.isfinite(r["loss"]) for r in rows)

    before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
    refused(["train", "vae", "--workdir", workdir, *TINY], "already holds files",
             "--resume", "--overwrite")
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before

    grid = str(tmp_path / "grid.png")
    cli.main(["sample", "--workdir", workdir, "--n", "9", "--out", grid])
    assert os.path.getsize(grid) > 0
    refused(["sample", "--workdir", workdir, "--out", grid], "exists", "--overwrite")

    cli.main(["evaluate", "--workdir", workdir])
    out = capsys.readouterr().out
    assert "IWAE (k=4)" in out and "independent per-pixel Bernoulli" in out
    assert "FD-digits reference (held-out real vs train)" in out
    report = json.load(open(os.path.join(workdir, "eval", "step_0000004.json")))
    lk = report["likelihood"]
    # A bound on a 4-step model is poor but finite; the uniform baseline is exactly D ln 2.
    assert np.isfinite(lk["model"]["nll_nats"])
    assert lk["baselines"]["uniform over 2 levels"]["nats"] == pytest.approx(64 * np.log(2))

    # The feature net went to the shared directory, and is read from there (or from the
    # workdir's own feature_net/ when the variable is unset) instead of being trained again.
    (net,) = os.listdir(nets)
    assert net.startswith("feature_net_digits_") and not os.path.exists(
        os.path.join(workdir, "feature_net"))
    from gmzoo.metrics import classifier

    def no_training(*a, **k):
        raise AssertionError("the feature net was trained again")
    monkeypatch.setattr(classifier, "train_classifier", no_training)
    cli.main(["evaluate", "--workdir", workdir])
    monkeypatch.delenv("GMZOO_FEATURE_NET_DIR")
    os.makedirs(os.path.join(workdir, "feature_net"))
    os.replace(nets / net, os.path.join(workdir, "feature_net", net))
    cli.main(["evaluate", "--workdir", workdir])
    assert "FD-digits reference" in capsys.readouterr().out and not os.listdir(nets)


def test_list_names_models_and_data(capsys):
    cli.main(["list"])
    out = capsys.readouterr().out
    for name in ("vae", "conv_vae", "hvae", "dae", "digits", "mnist5k"):
        assert name in out


def test_evaluate_without_checkpoints_is_refused(refused, capsys, tmp_path):
    refused(["evaluate", "--workdir", str(tmp_path)], "holds no checkpoints")


def test_overwrite_deletes_only_gmzoo_runs(refused, capsys, no_compute, tmp_path):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    refused(["train", "vae", "--workdir", str(precious), "--overwrite", *TINY],
             "--overwrite acts only on a run gmzoo wrote")
    assert (precious / "thesis.tex").read_text() == "keep me"


@pytest.mark.parametrize("setting,fragment", [
    ("model.name=ae", "model.name cannot be set"),
    ("train.steps=inf", "expected an integer"),
    ("optim.learning_rate=nan", "expected a finite number"),
    ("model.hidden=[64,32]", None),
])
def test_edge_values(refused, capsys, no_compute, tmp_path, setting, fragment):
    from gmzoo import config as cfglib
    from gmzoo import zoo

    if fragment is None:  # list syntax is accepted for tuples
        cfg = cfglib.override(zoo.get("vae").default(), [setting])
        assert cfg.model.hidden == (64, 32)
        return
    refused(["train", "vae", "--workdir", str(tmp_path / "w"), "--set", setting], fragment)


def test_evaluate_set_takes_only_eval_keys(refused, capsys, tmp_path):
    refused(["evaluate", "--workdir", str(tmp_path), "--set", "model.latent_dim=3"],
             "evaluate --set takes eval.*")


def test_divergence_exits_1_with_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "vae", "--workdir", str(tmp_path / "w"), *TINY,
                  "--set", "optim.learning_rate=1e30", "--set", "optim.warmup_steps=0",
                  "--set", "optim.schedule=constant", "--set", "train.eval_every=0",
                  "--set", "train.sample_every=0"])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("gmzoo: stopped: non-finite loss or gradient at step"), err


def test_an_experiment_file_may_return_a_dict(refused, capsys, no_compute, tmp_path):
    # Before: a get_config() returning a dict gave a cryptic traceback.
    from gmzoo.cli import load_experiment

    good, typo, bad = (tmp_path / n for n in ("good.py", "typo.py", "bad.py"))
    good.write_text('def get_config():\n    return {"model": {"name": "vae", "latent_dim": 4},'
                    ' "train": {"steps": 3}}\n')
    typo.write_text('def get_config():\n    return {"model": {"name": "vae", "latnt_dim": 4}}\n')
    bad.write_text("def get_config():\n    return [1]\n")
    c = load_experiment(str(good))
    assert (c.model.latent_dim, c.train.steps) == (4, 3)
    assert c.train.batch_size == load_experiment("vae").train.batch_size  # the model's defaults
    refused(["train", str(typo), "--workdir", str(tmp_path / "w")], "Did you mean 'model.latent_dim'")
    refused(["train", str(bad), "--workdir", str(tmp_path / "w")], "returned a list, not an ExperimentConfig")


@pytest.mark.parametrize("flags, fragment", [
    (["--num-processes", "2"], "missing --coordinator, --process-id"),
    (["--coordinator", "x", "--num-processes", "2", "--process-id", "0"], "must be HOST:PORT"),
    (["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"],
     "--process-id=2 must be in 0 .. 1"),
    (["--distributed", "--process-id", "0"], "--distributed reads the cluster's environment"),
])
def test_several_process_flags_are_checked_before_joining(refused, no_compute, tmp_path, flags,
                                                          fragment):
    refused(["train", "vae", "--workdir", str(tmp_path / "w"), *flags], fragment)
