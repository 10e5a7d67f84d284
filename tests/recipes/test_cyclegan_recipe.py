"""The cyclegan recipe on the spine: it trains through the loop (four networks, two players),
its objective splits each batch into two disjoint domains, ``translate`` gives the known map as
the target, configs it cannot take are refused in one line before any compute, and a tiny
model learns a translation."""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo import config as cfglib
from gmzoo import zoo
from gmzoo.config import ConfigError
from gmzoo.data import paired
from gmzoo.data.pipeline import ordered_batches
from gmzoo.recipes import cyclegan
from gmzoo.zoo import evaluate
from gmzoo.train.loop import init_state
from gmzoo.zoo import setup, train
from player_state import changed, counts

# The row's own tiny size and the contract test's batch (tests/test_model_table.py), so the
# compiled step is the one that test compiles (the run's compilation cache serves it).
TINY = ["data.name=digits", "model.features=2", "model.num_blocks=1", "model.d_features=2",
        "train.batch_size=16", "train.steps=2", "train.log_every=1", "train.checkpoint_every=2",
        "train.eval_every=0", "train.sample_every=0", "train.progress_bar=false",
        "eval.num_samples=16", "eval.max_examples=16", "eval.batch_size=16",
        "eval.feature_net_steps=20"]
NETS = {"generator": ("g_ab", "g_ba"), "discriminator": ("d_a", "d_b")}


def tiny(extra=()):
    return cfglib.override(zoo.get("cyclegan").default(), TINY + list(extra))


def _test_batch(run, n):
    batch = next(iter(ordered_batches(run.test_source, n, 0)))
    return run.space.prepare(batch, jax.random.key(0))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(workdir, initial state, state after a 2-step run through ``loop.train``)."""
    config, workdir = tiny(), str(tmp_path_factory.mktemp("cyclegan") / "run")
    start = init_state(setup(config))
    return workdir, start, train(config, workdir, verbose=False)


def test_four_networks_learn_on_two_optimizers(trained):
    workdir, start, state = trained
    assert int(jax.device_get(state.step)) == 2
    assert {p: set(state.params[p]) for p in NETS} == {p: set(n) for p, n in NETS.items()}
    for player, names in NETS.items():
        for name in names:
            assert changed(start.params[player][name], state.params[player][name]), name
        assert counts(state.opt_state[player]) == {2}, player  # one update per step each
    assert changed(start.ema_params["generator"], state.ema_params["generator"])
    assert not state.model_state  # instance norm only: nothing kept besides params
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert [r["step"] for r in rows] == [1, 2]
    assert {"g_adversarial", "g_cycle", "d_loss_a", "d_loss_b", "d_loss", "g_loss"} <= set(rows[-1])
    assert all(np.isfinite(v) for k, v in rows[-1].items() if k != "split")


def test_evaluate_reports_psnr_ssim_and_fd_of_translations(trained):
    """``gmzoo evaluate`` on the 2-step run: PSNR / SSIM of G(a) and of the identity against
    dilate(a) on the test split, FD / KID of the outputs."""
    report = evaluate(trained[0], verbose=False)
    t = report["translation"]
    assert t["num_test"] == 16 and "identity" in t["baseline"]
    for label in ("model", "baseline"):
        assert np.isfinite(t[f"PSNR {label} (dB)"]) and -1 <= t[f"SSIM {label}"] <= 1
    assert t["SSIM window"].startswith("7x7")
    fd = [v for k, v in report["sample_quality"].items() if k.startswith(("FD", "KID"))]
    assert fd and all(np.isfinite(fd))
    assert np.isfinite(report["heldout"]["g_cycle"])


class _Scale(nn.Module):
    """x -> s x with one parameter s (a generator set by hand)."""

    @nn.compact
    def __call__(self, x):
        return self.param("s", nn.initializers.ones, ()) * x


class _MeanCritic(nn.Module):
    """x -> c * mean(x) per image, [B, 1, 1, 1] (a one-patch discriminator set by hand)."""

    @nn.compact
    def __call__(self, x):
        return self.param("c", nn.initializers.ones, ()) * jnp.mean(x, axis=(1, 2, 3))[:, None, None, None]


@pytest.mark.parametrize("s", [-1.0, 0.5])
def test_objectives_use_disjoint_domains(s):
    """With G = F = (x -> s x) and D_A = D_B = (x -> c mean(x)) the objectives are computed by
    hand from A = even rows and B = -(odd rows): G = F = negation makes the cycle loss 0. Any
    other split (B from all rows, A and B from the same rows, B not inverted) gives other
    numbers."""
    m = cyclegan.CycleGANConfig(domains="digits_vs_inverted")
    d_objective, g_objective = cyclegan._objectives(m, cyclegan.CycleGANNets(_Scale(), _MeanCritic()))
    x = jax.random.uniform(jax.random.key(0), (6, 8, 8, 1), minval=-1.0, maxval=1.0)
    batch = {"image": x, "label": jnp.arange(6)}
    c_a, c_b = 0.7, -1.3
    g = {"g_ab": {"s": jnp.float32(s)}, "g_ba": {"s": jnp.float32(s)}}
    d = {"d_a": {"c": jnp.float32(c_a)}, "d_b": {"c": jnp.float32(c_b)}}
    xn = np.asarray(x, np.float64)
    a, b = xn[0::2], -xn[1::2]
    mean = lambda y: y.mean(axis=(1, 2, 3))  # noqa: E731
    d_b = 0.5 * np.mean((c_b * mean(b) - 1) ** 2) + 0.5 * np.mean((c_b * mean(s * a)) ** 2)
    d_a = 0.5 * np.mean((c_a * mean(a) - 1) ** 2) + 0.5 * np.mean((c_a * mean(s * b)) ** 2)
    adv = 0.5 * np.mean((c_b * mean(s * a) - 1) ** 2) + 0.5 * np.mean((c_a * mean(s * b) - 1) ** 2)
    cycle = np.mean(np.abs(s * s * a - a)) + np.mean(np.abs(s * s * b - b))
    identity = np.mean(np.abs(s * b - b)) + np.mean(np.abs(s * a - a))  # G(b) - b, F(a) - a

    d_loss, (d_metrics, _) = d_objective(d, g, batch, jax.random.key(1), {})
    g_loss, (g_metrics, _) = g_objective(g, d, batch, jax.random.key(2), {})
    np.testing.assert_allclose(d_metrics["loss_a"], d_a, rtol=1e-5)
    np.testing.assert_allclose(d_metrics["loss_b"], d_b, rtol=1e-5)
    np.testing.assert_allclose(d_loss, d_a + d_b, rtol=1e-5)
    np.testing.assert_allclose(g_metrics["adversarial"], adv, rtol=1e-5)
    np.testing.assert_allclose(g_metrics["cycle"], cycle, rtol=1e-5, atol=1e-7)
    if s == -1.0:
        assert float(g_metrics["cycle"]) == 0.0
    np.testing.assert_allclose(g_metrics["identity"], identity, rtol=1e-5)
    np.testing.assert_allclose(g_loss, m.adversarial_weight * adv + m.cycle_weight * cycle
                               + m.identity_weight * identity, rtol=1e-5)


@pytest.mark.parametrize("domains", list(paired.DOMAINS))
def test_translate_targets_the_known_map(domains):
    run = setup(tiny([f"model.domains={domains}"]))
    state = init_state(run)
    batch = _test_batch(run, 6)
    t = jax.jit(run.recipe.translate(run.config.model, run.module))(
        state.ema_params, batch, jax.random.key(0))
    x = batch["image"]  # [6, 8, 8, 1]
    assert all(np.shape(v) == x.shape for v in t)
    # The target is what unpaired_domains does to a B row: feed every image twice, take B.
    twice = jnp.repeat(x, 2, axis=0)
    _, b = paired.unpaired_domains(domains, twice, jnp.zeros(12, jnp.int32))
    np.testing.assert_array_equal(t.target, b["image"])
    assert not np.array_equal(t.target, x)
    np.testing.assert_array_equal(t.source, x)
    np.testing.assert_array_equal(t.baseline, x)
    assert np.all(np.isfinite(t.output)) and np.all(np.abs(np.asarray(t.output)) <= 1)
    assert run.recipe.sampler is None and "identity" in run.recipe.baseline


@pytest.mark.parametrize("extra, words", [
    (["train.batch_size=7"], "must be even"),
    (["data.scale=unit"], "data.scale=symmetric"),
    (["data.binarize=dynamic"], "data.binarize=none"),
    (["model.domains=horses_vs_zebras"], "digits_vs_inverted, thin_vs_thick"),
    (["model.loss=wasserstein"], "least_squares, non_saturating"),
    (["model.cycle_weight=-1"], "model.cycle_weight"),
    (["model.identity_weight=-0.5"], "model.identity_weight"),
    (["model.adversarial_weight=-2"], "model.adversarial_weight"),
    (["model.features=0"], "model.features"),
    (["model.num_blocks=0"], "model.num_blocks"),
    (["model.d_features=0"], "model.d_features"),
    (["model.d_layers=2"], "model.d_layers <= 1"),
    (["model.d_learning_rate=0"], "model.d_learning_rate"),
])
def test_refusals_are_one_line_and_before_compute(extra, words, tmp_path):
    with pytest.raises(ConfigError) as e:
        setup(tiny(extra))
    assert words in str(e.value) and "\n" not in str(e.value)
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError):
        train(tiny(extra), str(workdir), verbose=False)
    assert not workdir.exists()


def test_image_shape_the_resnet_generator_cannot_take():
    recipe = zoo.get("cyclegan")
    with pytest.raises(ConfigError) as e:
        recipe.check(tiny(), (10, 10, 1))
    assert "divisible by 4" in str(e.value) and "\n" not in str(e.value)
    recipe.check(tiny(), (28, 28, 1))
