"""Variational dequantization (gmzoo.families.flows.dequantization): q(u | x) lies in [0, 1)
and its log-density is the float64 change of variables of the noise (random, non-identity
params; the conditioning reaches u); at the real init q is exactly uniform, so the bound
equals the uniform-dequantization figure for the same key; the loss's gradient reaches q and
the flow; samples are levels; refusals of the wrong data space in one line. The training
metric's bits/dim against the evaluator's (through the zoo, on digits):
tests/families/flows/test_flow_family.py."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gmzoo import config as cfglib
from gmzoo import zoo
from gmzoo.data.preprocess import make_data_space
from gmzoo.data.transforms import dequantize_uniform
from gmzoo.families.flows import dequantization as dq

VARIATIONAL = ("model.dequantization=variational", "data.scale=levels",
               "data.dequantize=false", "model.dequantizer_couplings=2",
               "model.dequantizer_hidden=4")
SHAPE = (1, 4, 4, 1)  # D = 16 for the float64 Jacobian


def test_q_lies_in_the_unit_interval_and_its_log_density_is_the_change_of_variables(
        numpy_init):
    """log q(u | x) = log Logistic(eps) - log|det du/deps| (slogdet of jacfwd, float64) on
    random params under which u is far from sigmoid(eps) and depends on x; in float32 u stays
    in [0, 1) with finite log q for noise far in both tails (|eps| up to ~50)."""
    deq = dq.Dequantizer(num_levels=17, num_couplings=2, hidden=4)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 17, size=SHAPE).astype(np.float64)
    x_other = rng.integers(0, 17, size=SHAPE).astype(np.float64)
    eps = np.clip(rng.logistic(size=SHAPE), -4, 4)
    v = numpy_init(deq, jnp.zeros(SHAPE), jnp.zeros(SHAPE), scale=1.5, seed=1)
    v = jax.tree_util.tree_map_with_path(
        lambda p, a: a + 1.0 if p[-1].key == "scale_factor" else a, v)
    with jax.enable_x64(True):
        v64 = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), v)

        @jax.jit
        def run(v, x, eps):
            def u_of(flat):
                return deq.apply(v, x, flat.reshape(SHAPE))[0].ravel()
            return jax.jacfwd(u_of)(eps.ravel()), deq.apply(v, x, eps)

        jac, (u, log_q) = run(v64, jnp.asarray(x), jnp.asarray(eps))
        _, (u_other, _) = run(v64, jnp.asarray(x_other), jnp.asarray(eps))
        assert log_q.dtype == jnp.float64
    sign, log_abs_det = np.linalg.slogdet(np.asarray(jac))
    assert sign != 0
    expected = stats.logistic.logpdf(eps).sum() - log_abs_det
    np.testing.assert_allclose(log_q[0], expected, rtol=1e-10, atol=1e-9)
    assert np.abs(np.asarray(u) - 1 / (1 + np.exp(-eps))).max() > 0.05  # not the identity
    assert np.abs(np.asarray(u) - np.asarray(u_other)).max() > 1e-2  # q sees x

    xs = jnp.asarray(np.random.default_rng(1).integers(0, 17, size=(64, 4, 4, 1)), jnp.float32)
    tails = 10.0 * dq.logistic_noise(jax.random.key(3), xs.shape)
    u32, log_q32 = jax.jit(deq.apply)(v, xs, tails)
    assert float(jnp.abs(tails).max()) > 30
    assert float(u32.min()) >= 0.0 and float(u32.max()) < 1.0
    assert np.all(np.isfinite(np.asarray(log_q32)))


def test_at_init_q_is_uniform_and_the_bound_is_the_uniform_dequantization_figure():
    """Real (jitted) init of the tiny variational Real NVP on 8x8 levels: for one key, u = the
    U(0, 1) draw that data.dequantize=true makes from that key (to rounding), log q = 0
    exactly, and the bound = log p((x + u) / L) - D log L, the uniform figure (what the
    uniform row's evaluator reports on that draw), and the loss is its mean; the loss's
    gradient is finite and reaches q's last layers (zero at init) and the flow's; the
    likelihood entries are the one-sample bound and the importance-weighted one (K =
    eval.importance_samples: gmzoo.losses.vae.log_mean_exp_chunked of the one-sample bound,
    not recompiled here); samples are integer levels 0..L-1."""
    recipe, levels = zoo.get("realnvp"), 17
    cfg = cfglib.override(recipe.default(), ["data.name=digits", *recipe.tiny, *VARIATIONAL,
                                             "eval.importance_samples=2"])
    recipe.check(cfg, (8, 8, 1))
    nets = recipe.build(cfg.model, (8, 8, 1), levels)
    raw = np.random.default_rng(0).integers(0, levels, size=(8, 8, 8, 1)).astype(np.float32)
    space = make_data_space(cfg.data, levels)
    assert space.discrete and space.dequantization_nats_per_dim == 0.0
    batch = space.prepare({"image": jnp.asarray(raw)}, jax.random.key(1))
    np.testing.assert_array_equal(batch["image"], raw)  # the data space is the levels
    params = jax.jit(lambda k, b: recipe.init(nets, k, b))(jax.random.key(0), batch)["params"]
    (one_label, one), (iw_label, iw) = recipe.likelihoods(cfg.model, nets, cfg.eval).items()
    assert one_label == "variational dequantization bound (1 sample)"
    assert iw_label == "importance-weighted variational dequantization bound (K=2)"
    loss_fn = recipe.loss(cfg.model, nets)

    @jax.jit
    def at_init(p, x, key):
        u, log_q = nets.net.apply({"params": p}, x, key,
                                  method=lambda m, x, k: m.dequantizer.sample(x, k))
        uniform = nets.log_prob(p, dequantize_uniform(key, x, levels))
        grads, metrics = jax.grad(loss_fn, has_aux=True)(p, {"image": x}, key)
        samples = nets.net.apply({"params": p}, key, (4, *nets.event_shape), 1.0, None,
                                 method="sample")
        return u, log_q, one(p, x, key), uniform, grads, metrics, samples

    x, key = batch["image"], jax.random.key(5)
    u, log_q, bound, uniform, grads, metrics, samples = at_init(params, x, key)
    np.testing.assert_allclose(u, jax.random.uniform(key, x.shape), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(log_q, 0.0)
    dims = math.prod(x.shape[1:])
    np.testing.assert_allclose(bound, uniform - dims * math.log(levels), rtol=1e-6)
    np.testing.assert_allclose(metrics["nll"], -np.mean(bound), rtol=1e-6)  # the same key
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    for part in ("dequantizer", "flow"):
        outs = [g for path, g in jax.tree_util.tree_leaves_with_path(grads[part])
                if path[-2].key == "out" and path[-1].key == "kernel"]
        assert outs and max(float(jnp.abs(g).max()) for g in outs) > 1e-4
    samples = np.asarray(samples)
    assert samples.shape == (4, *nets.event_shape) and samples.min() >= 0
    assert samples.max() <= levels - 1 and np.all(samples == np.round(samples))


@pytest.mark.parametrize("name, setting, fragments", [
    ("realnvp", ["model.dequantization=variational"],
     ("model.dequantization=variational", "data.scale=levels data.dequantize=false",
      "got data.scale=unit, data.dequantize=true")),
    ("glow", ["model.dequantization=variational", "data.scale=levels"],
     ("data.scale=levels data.dequantize=false", "data.dequantize=true")),
    ("glow", ["model.dequantization=variational", "data.scale=levels", "data.dequantize=false",
              "data.binarize=dynamic"], ("data.binarize=none", "data.binarize=dynamic")),
    ("realnvp", ["data.scale=levels", "data.dequantize=false"],
     ("density over continuous data", "model.dequantization=variational")),
    ("glow", ["model.dequantization=learned"], ("model.dequantization", "variational")),
    ("realnvp", ["eval.importance_samples=0"], ("eval.importance_samples",)),
])
def test_the_wrong_data_space_is_refused_in_one_line_before_compute(name, setting, fragments,
                                                                    refused, no_compute,
                                                                    tmp_path):
    args = [a for s in setting for a in ("--set", s)]
    refused(["train", name, "--workdir", str(tmp_path / "run"), *args], *fragments)
    assert not (tmp_path / "run").exists()
