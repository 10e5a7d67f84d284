"""The flows on the spine: refusals in one line before any compute; the training metric's
bits/dim is the evaluator's (uniform dequantization's log L and the logit's log-det counted;
variational dequantization's bound on the levels); at real init a flow is a near-uniform
density on [0, 1)^D; temperature 0 is deterministic; one class-conditional run through the
command line (train, sample at a temperature and a class, the evaluator's marginal over the
classes). Training, sampling, held-out loss and resume of
each row at its tiny size: tests/test_model_table.py."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo import cli
from gmzoo import config as cfglib
from gmzoo import zoo
from gmzoo.train.evaluate import likelihood_report

QUIET = ["--set", "train.progress_bar=false", "--set", "train.eval_every=0",
         "--set", "train.sample_every=0"]


def tiny_config(name, extra=()):
    recipe = zoo.get(name)
    return cfglib.override(recipe.default(), ["data.name=digits", *recipe.tiny, *extra])


@pytest.mark.parametrize("name, setting, fragments", [
    ("realnvp", ["data.dequantize=false"], ("density over continuous data",
                                            "data.dequantize=true")),
    ("glow", ["data.dequantize=false", "data.binarize=dynamic"],
     ("density over continuous data",)),
    ("glow", ["data.scale=symmetric"], ("data.scale=unit", "'symmetric'")),
    ("glow", ["model.num_levels=3"], ("28x28", "model.num_levels=3", "multiples of 8")),
    ("realnvp", ["model.num_scales=4"], ("model.num_scales=4", "multiples of 8")),
    ("realnvp", ["model.logit_alpha=0.5"], ("model.logit_alpha=0.5", "[0, 0.5)")),
    ("glow", ["sample.temperature=-1"], ("sample.temperature=-1.0 must be >= 0",)),
    ("glow", ["sample.class_label=2"], ("is unconditional", "model.num_classes")),
    ("realnvp", ["model.num_classes=10", "sample.class_label=10"], ("classes 0..9",)),
])
def test_bad_input_is_refused_in_one_line_before_compute(name, setting, fragments, refused,
                                                         no_compute, tmp_path):
    args = [a for s in setting for a in ("--set", s)]
    refused(["train", name, "--workdir", str(tmp_path / "run"), *args], *fragments)
    assert not (tmp_path / "run").exists()


VARIATIONAL = ("model.dequantization=variational", "data.scale=levels", "data.dequantize=false",
               "model.dequantizer_couplings=2", "model.dequantizer_hidden=4",
               "eval.importance_samples=1")


@pytest.mark.parametrize("name, extra, bound", [
    ("realnvp", (), "exact (change of variables), dequantized"),
    ("glow", VARIATIONAL, "variational dequantization bound (1 sample)"),
], ids=["realnvp-uniform", "glow-variational"])
def test_training_bits_per_dim_is_the_evaluators_and_init_is_near_uniform(name, extra, bound):
    """On the same batch the loss's bits/dim equals the evaluator's: uniform dequantization,
    (NLL / D + log L) / log 2 of the dequantized batch; variational, NLL / (D log 2) of the
    levels with the bound holding D log L (the same key draws u in both: the evaluator's for
    the first batch). At init (identity couplings, ActNorm fitted to the batch, q uniform) the
    flow is close to the uniform density on [0, 1)^D, i.e. near log2(17) = 4.09 bits/dim on
    digits. (Both paths are shared by the two rows: one row each.)"""
    run = zoo.setup(tiny_config(name, extra))
    raw = np.asarray([run.train_source[i]["image"] for i in range(32)], np.float32)
    batch = run.space.prepare({"image": jnp.asarray(raw), "label": jnp.zeros((32,), jnp.int32)},
                              jax.random.key(1))
    init = jax.jit(lambda k, b: run.recipe.init(run.module, k, b))  # eager: seconds of op compiles
    params = init(jax.random.key(0), batch)["params"]
    key = jax.random.fold_in(jax.random.key(run.config.eval.seed + 1), 0)  # the evaluator's
    _, metrics = jax.jit(run.loss_fn)(params, batch, key)
    report = likelihood_report(run, params, np.asarray(batch["image"]), np.asarray(batch["image"]),
                               raw.astype(np.int64), raw.astype(np.int64))
    assert report["model"]["bits_per_dim"] == pytest.approx(float(metrics["bits_per_dim"]),
                                                            rel=1e-5)
    assert report["model"]["bound"] == bound and len(report["models"]) == 1
    assert 0.5 * math.log2(17) < float(metrics["bits_per_dim"]) < 1.5 * math.log2(17)


def test_temperature_zero_is_deterministic_and_samples_lie_in_the_unit_interval():
    run = zoo.setup(tiny_config("glow", ["sample.temperature=0"]))
    batch = {"image": jnp.asarray(np.random.default_rng(0).uniform(size=(8, *run.image_shape)),
                                  jnp.float32)}
    params = run.recipe.init(run.module, jax.random.key(0), batch)["params"]
    sample = jax.jit(run.sample_fn(False), static_argnums=2)
    a, b = (np.asarray(sample(params, jax.random.key(k), 3)) for k in (1, 2))
    np.testing.assert_array_equal(a, b)
    warm = zoo.setup(tiny_config("glow"))
    c = np.asarray(jax.jit(warm.sample_fn(False), static_argnums=2)(params, jax.random.key(1), 3))
    assert np.abs(c - a).max() > 1e-3 and c.min() >= 0 and c.max() <= 1


def test_the_evaluators_likelihood_of_a_conditional_flow_is_the_marginal_over_classes():
    """log p(x) = log (1/K) sum_y p(x | y), and the label reaches the couplings."""
    run = zoo.setup(tiny_config("realnvp", ["model.num_classes=10"]))
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(4, *run.image_shape)), jnp.float32)
    batch = {"image": x, "label": jnp.arange(4, dtype=jnp.int32)}
    params = run.recipe.init(run.module, jax.random.key(0), batch)["params"]
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(1), p.shape),
                          params)
    (label, fn), = run.recipe.likelihoods(run.config.model, run.module, run.config.eval).items()
    assert "marginal over 10 classes" in label
    per_class = jnp.stack([run.module.log_prob(params, x, jnp.full((4,), y, jnp.int32))
                           for y in range(10)])  # [K, B]
    np.testing.assert_allclose(fn(params, x, None),
                               jax.nn.logsumexp(per_class, axis=0) - math.log(10), rtol=1e-5)
    assert float(jnp.abs(per_class[0] - per_class[1]).max()) > 1e-3


def test_a_class_conditional_flow_trains_and_samples_a_class_through_the_cli(tmp_path):
    workdir = str(tmp_path / "glow")
    tiny = [a for s in zoo.get("glow").tiny for a in ("--set", s)]
    cli.main(["train", "glow", "--workdir", workdir, "--set", "data.name=digits", *tiny, *QUIET,
              "--set", "model.num_classes=10", "--set", "train.steps=2",
              "--set", "train.batch_size=16", "--set", "train.checkpoint_every=2"])
    grid = str(tmp_path / "threes.png")
    cli.main(["sample", "--workdir", workdir, "--n", "4", "--out", grid,
              "--set", "sample.temperature=0.7", "--set", "sample.class_label=3"])
    assert os.path.getsize(grid) > 0
