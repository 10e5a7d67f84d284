"""The autoregressive recipes on the spine: refusals in one line before any compute, every
cached sampler equal to the naive one through the recipe's sampler, the exact (and, for a
class-conditional model, marginal) likelihood the evaluator reports, and one run through the
command line (train, sample at a temperature, evaluate). Training, sampling and the held-out
loss of every row at its tiny size: tests/test_model_table.py."""

import itertools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo import cli
from gmzoo import config as cfglib
from gmzoo import zoo
from gmzoo.families.autoregressive import family

ROWS = ("fvsbn", "nade", "made", "pixelcnn", "gated_pixelcnn", "pixelrnn", "wavenet",
        "transformer")
CACHED = ("nade", "pixelcnn", "gated_pixelcnn", "wavenet", "transformer")
QUIET = ["--set", "train.progress_bar=false", "--set", "train.eval_every=0",
         "--set", "train.sample_every=0"]


def tiny_config(name, extra=()):
    recipe = zoo.get(name)
    data = ["data.name=digits"] if recipe.default().data.name == "mnist5k" else []
    return cfglib.override(recipe.default(), data + list(recipe.tiny) + list(extra))


def test_table_rows_and_defaults():
    assert set(ROWS) <= set(zoo.models())
    for name in ROWS:
        cfg = zoo.get(name).default()
        assert isinstance(cfg.sample, family.ARSampleConfig)
        if name == "wavenet":
            assert (cfg.data.name, cfg.data.scale, cfg.model.likelihood) == (
                "tones", "levels", "categorical")
        else:
            assert (cfg.data.name, cfg.data.binarize, cfg.model.likelihood) == (
                "mnist5k", "dynamic", "bernoulli")
        assert zoo.get(name).samplers[0] == ("cached" if name in CACHED else "naive")


@pytest.mark.parametrize("name, setting, fragment", [
    ("pixelcnn", "model.features=2", "model.features=2 must be at least the 3 channels"),
    ("gated_pixelcnn", "model.features=2", "model.features=2 must be at least the 3 channels"),
    ("pixelrnn", "model.hidden=2", "model.hidden=2 must be at least the 3 channels"),
])
def test_colour_images_need_a_feature_group_per_channel(name, setting, fragment):
    """The convolutional and recurrent nets split their features into R, G, B groups: a
    colour set (e.g. cifar10, [32, 32, 3]) with fewer features than channels is refused by the
    recipe's check, before any parameter is built."""
    recipe = zoo.get(name)
    with pytest.raises(cfglib.ConfigError, match=fragment.replace("(", "\\(")):
        recipe.check(cfglib.override(recipe.default(), [setting]), (32, 32, 3))
    recipe.check(recipe.default(), (32, 32, 3))  # the defaults fit colour


@pytest.mark.parametrize("name, setting, fragments", [
    ("nade", ["data.binarize=none", "data.scale=levels"],
     ("likelihood=bernoulli takes binary data", "model.likelihood=categorical")),
    ("pixelcnn", ["data.binarize=none"], ("models discrete data", "data.scale=levels")),
    ("nade", ["data.binarize=none", "data.scale=levels", "data.dequantize=true",
              "model.likelihood=categorical"], ("models discrete data",)),
    ("made", ["model.likelihood=poisson"], ("model.likelihood='poisson'", "categorical")),
    ("made", ["sample.sampler=cached"], ("sample.sampler='cached'", "takes naive")),
    ("nade", ["sample.temperature=0"], ("sample.temperature=0.0 must be > 0",)),
    ("nade", ["sample.temperature=-1"], ("sample.temperature=-1.0 must be > 0",)),
    ("nade", ["sample.class_label=3"], ("is unconditional", "model.num_classes")),
    ("fvsbn", ["model.num_classes=10", "sample.class_label=10"], ("classes 0..9",)),
    ("fvsbn", ["model.num_classes=4"], ("model.num_classes=4", "has 10 classes")),
    ("pixelcnn", ["model.kernel=4"], ("must be odd",)),
    ("transformer", ["model.d_model=10", "model.num_heads=4"], ("does not split",)),
    ("wavenet", ["model.dilations=1,0"], ("positive integers",)),
    ("pixelrnn", ["model.layer=column"], ("model.layer='column'", "diagonal")),
    ("made", ["model.ordering=2,1,0"], ("model.ordering", "shape (3,)", "(784,)")),
])
def test_bad_input_is_refused_in_one_line_before_compute(name, setting, fragments, refused,
                                                         no_compute, tmp_path):
    args = [a for s in setting for a in ("--set", s)]
    refused(["train", name, "--workdir", str(tmp_path / "run"), *args], *fragments)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", CACHED)
def test_the_cached_sampler_draws_what_the_naive_one_draws(name):
    """Through the recipe's sampler (the family's wiring: params, labels, draw), at a
    temperature, on the row's tiny network."""
    extra = ["model.num_classes=10", "sample.class_label=-1"] if name == "nade" else []
    runs = {s: zoo.setup(tiny_config(name, extra + [f"sample.sampler={s}",
                                                    "sample.temperature=0.7"]))
            for s in ("cached", "naive")}
    run = runs["cached"]
    batch = {"image": jnp.zeros((2, *run.image_shape)), "label": jnp.zeros((2,), jnp.int32)}
    params = run.recipe.init(run.module, jax.random.key(0), batch)["params"]
    key = jax.random.key(3)
    cached, naive = (np.asarray(jax.jit(r.sample_fn(False), static_argnums=2)(params, key, 4))
                     for r in (runs["cached"], runs["naive"]))
    assert cached.shape == (4, *run.image_shape)
    np.testing.assert_array_equal(cached, naive)
    assert len(np.unique(cached.reshape(4, -1), axis=0)) > 1


def test_marginal_likelihood_of_a_conditional_model_sums_to_one():
    """A class-conditional FVSBN on 3x3 binary images: the evaluator's likelihood, log (1/K)
    sum_y p(x | y), sums to 1 over all 512 images, and differs from each p(x | y)."""
    m = family.FVSBNConfig(num_classes=3)
    nets = family._build(m, (3, 3, 1), 2)
    x = jnp.asarray(list(itertools.product((0.0, 1.0), repeat=9))).reshape(512, 3, 3, 1)
    variables = nets.net.init(jax.random.key(0), x[:2], jnp.zeros((2,), jnp.int32))
    params = jax.tree.map(lambda p: p + 0.5 * jax.random.normal(jax.random.key(1), p.shape),
                          variables["params"])
    (label, fn), = family._likelihoods(m, nets, cfglib.EvalConfig()).items()
    assert "marginal over 3 classes" in label
    lp = fn(params, x, None)
    assert float(jax.nn.logsumexp(lp)) == pytest.approx(0.0, abs=1e-5)
    given_0 = nets.log_prob(params, x, jnp.zeros((512,), jnp.int32))
    assert float(jnp.max(jnp.abs(lp - given_0))) > 1e-2


def test_train_sample_at_a_temperature_and_evaluate_through_the_cli(capsys, refused, tmp_path):
    workdir = str(tmp_path / "nade")
    tiny = [a for s in zoo.get("nade").tiny for a in ("--set", s)]
    cli.main(["train", "nade", "--workdir", workdir, "--set", "data.name=digits", *tiny, *QUIET,
              "--set", "train.steps=2", "--set", "train.batch_size=16",
              "--set", "train.checkpoint_every=2"])
    grid = str(tmp_path / "cold.png")
    cli.main(["sample", "--workdir", workdir, "--n", "4", "--out", grid,
              "--set", "sample.temperature=0.5", "--set", "sample.sampler=naive"])
    assert os.path.getsize(grid) > 0
    refused(["sample", "--workdir", workdir, "--set", "model.hidden=3"],
            "sample --set takes sample.* keys", "'model.hidden'")
    refused(["sample", "--workdir", workdir, "--set", "sample.temprature=2"],
            "sample.temprature", "temperature")
    refused(["sample", "--workdir", workdir, "--set", "sample.temperature=0"], "must be > 0")
    capsys.readouterr()
    cli.main(["evaluate", "--workdir", workdir, "--set", "eval.num_samples=16",
              "--set", "eval.max_examples=32", "--set", "eval.feature_net_steps=20"])
    out = capsys.readouterr().out
    assert "model, exact" in out and "independent per-pixel Bernoulli" in out
    report = json.load(open(os.path.join(workdir, "eval", "step_0000002.json")))
    lk = report["likelihood"]
    assert lk["model"]["bound"] == "exact" and np.isfinite(lk["model"]["nll_nats"])
    # two steps from a near-uniform start: near the uniform model's 64 ln 2, never above by much
    assert lk["model"]["nll_nats"] == pytest.approx(64 * math.log(2), rel=0.1)


@pytest.mark.parametrize("likelihood, params_per_dim", [("categorical", 17), ("logistic_mix", 6)])
def test_grey_level_likelihoods_on_the_17_level_digits(likelihood, params_per_dim):
    """On data.scale=levels the network emits P parameters per pixel and the loss is a finite
    NLL near the uniform model's 64 ln 17 at initialisation."""
    run = zoo.setup(tiny_config("nade", ["data.binarize=none", "data.scale=levels",
                                         f"model.likelihood={likelihood}",
                                         "model.mixture_components=2"]))
    x = jnp.asarray(np.asarray([run.train_source[i]["image"] for i in range(4)], np.float32))
    assert run.module.num_levels == 17 and float(x.max()) <= 16
    params = run.recipe.init(run.module, jax.random.key(0), {"image": x})["params"]
    assert run.module.apply_fn(params, x).shape == (4, 8, 8, 1, params_per_dim)
    loss, metrics = run.loss_fn(params, {"image": x}, jax.random.key(1))
    assert np.isfinite(float(loss)) and 0.5 < float(loss) / (64 * math.log(17)) < 2.0
