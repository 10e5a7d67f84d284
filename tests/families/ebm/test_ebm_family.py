"""The EBM recipes on the spine: refusals in one line before any compute, training on a toy
set with the replay buffer in the train state (resumed to the bit), the from-noise sampler,
`gmzoo evaluate`'s family lines (energies, log Z by quadrature, the contour plot) and the
image path (FD/KID, the chain grid)."""

import os
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from gmzoo import config as cfglib
from gmzoo import zoo
from gmzoo.families.ebm import family
from gmzoo.metrics.points import spread_subset
from gmzoo.samplers import langevin
from gmzoo.train.loop import heldout_metrics, init_state, sample_images

QUIET = ["train.progress_bar=false", "train.eval_every=0", "train.sample_every=0"]
TOY = QUIET + ["model.hidden=64,64", "model.buffer_size=1000", "model.chain_steps=20",
               "train.batch_size=64", "train.steps=200", "train.log_every=100",
               "train.checkpoint_every=100", "eval.num_samples=300", "sample.steps=200"]
TINY_IMAGES = QUIET + ["model.architecture=mlp", "model.hidden=16", "model.buffer_size=64",
                       "model.chain_steps=3", "train.batch_size=16", "train.steps=2",
                       "train.log_every=1", "train.checkpoint_every=2", "eval.num_samples=40",
                       "eval.feature_net_steps=20", "eval.max_examples=40"]


def config(name, extra=()):
    return cfglib.override(zoo.get(name).default(), list(extra))


def test_defaults():
    img, toy = zoo.get("ebm").default(), zoo.get("ebm_toy").default()
    assert (img.data.name, img.data.scale, img.model.architecture) == ("digits", "symmetric", "conv")
    m = img.model
    assert (m.chain, m.step_size, m.noise_scale, m.chain_steps, m.grad_clip) == ("tempered", 10.0, 0.005, 60, 0.03)
    assert (m.buffer_size, m.reinit, img.train.batch_size, img.optim.b1) == (10_000, 1.0, 128, 0.0)
    assert toy.model.reinit == 0.05  # the toys keep a persistent buffer
    assert family.training_chain(m).temperature == pytest.approx(1.25e-6)
    assert (toy.data.name, toy.model.architecture, toy.model.chain) == ("ring8", "mlp", "ula")
    assert family.training_chain(toy.model).temperature == 1.0
    assert isinstance(img.sample, family.EBMSampleConfig)
    # the sample section inherits what it leaves at 0 / -1, and overrides the rest
    s = family.sampling_chain(m, family.EBMSampleConfig(steps=200))
    assert (s.sampler, s.kwargs["num_steps"], s.kwargs["step_size"], s.kwargs["noise_scale"]) == \
        ("tempered", 200, 10.0, 0.005)
    s = family.sampling_chain(m, family.EBMSampleConfig(sampler="ula", step_size=1e-4))
    assert (s.sampler, s.kwargs["step_size"], "noise_scale" in s.kwargs) == ("ula", 1e-4, False)


@pytest.mark.parametrize("name, setting, fragments", [
    ("ebm", "model.step_size=0", ("model.step_size=0.0 must be > 0",)),
    ("ebm", "model.step_size=-1e-3", ("model.step_size=-0.001 must be > 0",)),
    ("ebm", "sample.step_size=-0.5", ("sample.step_size=-0.5 must be >= 0",)),
    ("ebm", "model.chain_steps=0", ("model.chain_steps=0 must be > 0",)),
    ("ebm", "sample.sampler=gibbs", ("sample.sampler='gibbs'", "tempered, ula")),
    ("ebm", "model.chain=mala", ("model.chain='mala'", "tempered, ula")),
    ("ebm", "data.scale=unit", ("images in [-1, 1]", "data.scale=symmetric")),
    ("ebm", "model.buffer_size=64", ("train.batch_size=128", "model.buffer_size=64")),
    ("ebm", "model.reinit=1.5", ("model.reinit=1.5", "[0, 1]")),
    ("ebm", "model.noise_range=1,-1", ("model.noise_range=(1.0, -1.0)", "low < high")),
    ("ebm", "model.features=4,8,8,8,8", ("do not fit", "divisible by 16")),
    ("ebm_toy", "model.architecture=conv", ("conv energy takes images", "model.architecture=mlp")),
    ("ebm_toy", "data.name=grid25", ("does not cover grid25", "model.noise_range=-5,5")),
    ("ebm_toy", "sample.noise_scale=-2", ("sample.noise_scale=-2.0 must be >= -1",)),
])
def test_bad_input_is_refused_in_one_line_before_compute(name, setting, fragments, refused,
                                                         no_compute, tmp_path):
    refused(["train", name, "--workdir", str(tmp_path / "run"), "--set", setting], *fragments)
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("ebm") / "toy")
    cfg = config("ebm_toy", TOY)
    return workdir, cfg, zoo.train(cfg, workdir, verbose=False)


def test_toy_learns_an_energy_low_on_the_data(toy):
    """200 steps (~5 s) shape the energy coarsely (a bowl around the ring; the modes come
    later, see the family's measured runs): the test points' energy falls well below the noise
    the chains start from (untrained: the same), and chains from noise descend into the bowl.
    The report hook names the sampler and draws the contour plot; the true mixture's NLL is
    the closed form (entropy of 8 Gaussians of std 0.05: -1.10 nats)."""
    workdir, cfg, state = toy
    run = zoo.setup(cfg)
    out_dir = os.path.join(workdir, "eval")
    os.makedirs(out_dir, exist_ok=True)
    f = run.recipe.report(run, state.ema_params, out_dir)
    assert f["mean energy, test data"] < f["mean energy, noise (chain starts)"] - 1.0, f
    assert f["mean energy, samples"] < f["mean energy, noise (chain starts)"] - 0.5, f
    assert np.isfinite(f["test NLL of exp(-E), nats"])
    assert f["test NLL of the true mixture, nats"] == pytest.approx(-1.10, abs=0.05)
    assert f["training chain"].startswith("ula") and "T=1" in f["sampler"]
    before = family._energies(run, init_state(run).ema_params, run.test_source.points[:500])
    noise = family._energies(run, init_state(run).ema_params, np.asarray(run.module.noise(jax.random.key(0), 500)))
    assert abs(before.mean() - noise.mean()) < 0.5
    inside = lambda params: np.mean(np.linalg.norm(sample_images(run, params, 500, seed=0), axis=1) < 2.5)
    assert inside(state.ema_params) > 0.7  # uniform noise on [-3, 3]^2: 0.55
    assert inside(init_state(run).ema_params) < 0.65
    # the contour plot: a real two-panel figure, named in the report
    path = f["energy contour plot"]
    assert path == os.path.join(out_dir, "ebm_energy_ring8.png")
    img = np.asarray(Image.open(path).convert("L"))
    assert img.shape[0] > 300 and img.shape[1] > 1.8 * img.shape[0] and img.std() > 20


def test_the_buffer_lives_in_the_train_state_and_resumes_to_the_bit(toy, tmp_path):
    """The buffer moved away from its noise, and resuming from the step-100 checkpoint
    reproduces the run's step-200 params and buffer exactly."""
    workdir, cfg, state = toy
    buf = np.asarray(jax.device_get(state.model_state["buffer"]["x"]))
    assert buf.shape == (1000, 2) and np.all(np.isfinite(buf))
    run = zoo.setup(cfg)
    assert not np.allclose(buf, jax.device_get(init_state(run).model_state["buffer"]["x"]))
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(workdir, resumed_dir)
    shutil.rmtree(resumed_dir / "checkpoints" / "200")
    resumed = zoo.train(cfg, str(resumed_dir), resume=True, verbose=False)
    for a, b in zip(jax.tree.leaves(jax.device_get((state.params, state.model_state))),
                    jax.tree.leaves(jax.device_get((resumed.params, resumed.model_state)))):
        np.testing.assert_array_equal(a, b)


def test_sampler_runs_from_noise_with_the_sample_settings(toy):
    workdir, cfg, state = toy
    run = zoo.setup(cfg)
    x = sample_images(run, state.ema_params, 5, seed=0)
    assert x.shape == (5, 2) and np.all(np.isfinite(x))
    np.testing.assert_array_equal(x, sample_images(run, state.ema_params, 5, seed=0))
    # the same chain by hand: uniform noise on the range, then sample.steps ULA steps
    start_key, chain_key = jax.random.split(jax.random.key(0))
    x0 = jax.random.uniform(start_key, (5, 2), minval=-3.0, maxval=3.0)
    by_hand = langevin.ula(run.module.energy_fn(state.ema_params), chain_key, x0,
                           step_size=cfg.model.step_size, num_steps=200)
    np.testing.assert_allclose(x, by_hand, rtol=1e-5, atol=1e-5)
    # held-out loss: chains from noise, no buffer
    m = heldout_metrics(run, state.ema_params, limit=64)
    assert {"loss", "cd_gap", "energy_data", "energy_negatives", "energy_penalty"} == set(m)
    # the other sampler, each named for what it samples
    tempered = zoo.setup(cfglib.override(cfg, ["sample.sampler=tempered", "sample.noise_scale=0.01",
                                               "sample.steps=3"]))
    chain = family.sampling_chain(tempered.config.model, tempered.config.sample)
    assert chain.temperature == pytest.approx(0.01 ** 2 / (2 * 1e-3))
    assert sample_images(tempered, state.ema_params, 4, seed=0).shape == (4, 2)


def test_images_train_sample_and_evaluate(tmp_path):
    workdir = str(tmp_path / "digits")
    cfg = config("ebm", TINY_IMAGES)
    state = zoo.train(cfg, workdir, verbose=False)
    assert state.model_state["buffer"]["x"].shape == (64, 8, 8, 1)
    report = zoo.evaluate(workdir, verbose=False)
    q, f = report["sample_quality"], report["family"]
    assert np.isfinite(q["FD-digits (samples vs train)"]) and q["num_samples"] == 40
    assert "samples exp(-E/T) at T=1.25e-06" in f["sampler"]
    grid = np.asarray(Image.open(f["chains from noise"]))
    assert grid.size > 0 and f["chains from noise"].endswith("ebm_chains.png")
    x = sample_images(zoo.setup(cfg), state.ema_params, 3, seed=0)
    assert x.shape == (3, 8, 8, 1) and np.all((x >= 0) & (x <= 1))


def test_conv_energy_is_one_number_per_image_with_an_input_gradient():
    """The conv energy (8x8 -> 4x4 -> 2x2) gives [B] energies, examples independent (the
    chain's batched gradient is each example's own), and smooth (swish) input gradients."""
    nets = family._build(family.EBMConfig(features=(4, 8, 8), hidden=(8,)), (8, 8, 1), 17)
    x = jax.random.uniform(jax.random.key(0), (3, 8, 8, 1), minval=-1, maxval=1)
    params = jax.jit(nets.energy.init)(jax.random.key(1), x)["params"]  # compiled: not op by op
    energy = jax.jit(nets.energy_fn(params))
    e = energy(x)
    assert e.shape == (3,) and e.dtype == np.float32
    np.testing.assert_allclose(energy(x[1:2]), e[1:2], rtol=1e-5, atol=1e-6)
    g = jax.jit(lambda y: langevin.energy_grad(energy, y))(x)
    g1 = jax.jit(jax.grad(lambda y: energy(y)[0]))(x[:1])
    np.testing.assert_allclose(g[:1], g1, rtol=1e-5, atol=1e-7)
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 0


def test_toy_extents_cover_the_toy_sets():
    """The table the noise-range check reads holds every toy set's reach (and not much more)."""
    from gmzoo.data import registry
    for name, extent in family.TOY_EXTENT.items():
        reach = np.abs(registry.load(name, "train").points).max()
        assert extent - 0.3 < reach <= extent, (name, reach)


def test_contour_plot_shows_every_part_of_a_set_stored_by_component(tmp_path, monkeypatch):
    """moons stores its upper moon first: the training points drawn on the energy panel must
    include the lower moon too (the first 2,000 of 10,000 were all upper moon)."""
    import matplotlib.axes
    from gmzoo.data import registry
    src = registry.load("moons", "train")
    drawn = []
    scatter = matplotlib.axes.Axes.scatter
    monkeypatch.setattr(matplotlib.axes.Axes, "scatter",
                        lambda self, x, y, *a, **k: drawn.append(np.stack([x, y], -1))
                        or scatter(self, x, y, *a, **k))
    family.save_energy_contours(str(tmp_path / "e.png"), lambda x: np.sum(x ** 2, -1),
                                src.points, src.points[:10], np.array([-3.0, -3.0]),
                                np.array([3.0, 3.0]))
    shown = drawn[0]  # the training points, red, on the energy panel
    lower = {tuple(p) for p in src.points[src.labels == 1]}
    share = np.mean([tuple(p) in lower for p in shown])
    assert len(shown) <= 2000 and 0.4 < share < 0.6, (len(shown), share)
    assert len(spread_subset(src.points[:10], 2000)) == 10
    assert len(spread_subset(src.points, 999)) == 999
