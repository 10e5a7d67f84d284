"""FVSBN, NADE and MADE: autoregressive from the Jacobian in every ordering, normalised over every
configuration of a tiny case, sequential terms summing to the parallel log p(x), NADE's cached
sampler equal to the naive one, MADE's masks without dead units.

Parameters are drawn in numpy (the ``numpy_init`` fixture), so no compiled initialiser runs.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.families.autoregressive import dense, outputs, sampling

BINARY = (3, 3, 1)  # D = 9, bernoulli
CATEGORICAL = (2, 3, 1)  # D = 6, 3 levels, categorical
ALL_BINARY = np.array(list(itertools.product([0, 1], repeat=9)), np.float32).reshape(-1, *BINARY)
ALL_TERNARY = np.array(list(itertools.product([0, 1, 2], repeat=6)),
                       np.float32).reshape(-1, *CATEGORICAL)


def _likelihood(levels):
    name = "bernoulli" if levels == 2 else "categorical"
    return (functools.partial(outputs.log_prob, name, num_levels=levels),
            functools.partial(outputs.draw, name, num_levels=levels))


def _model(name, levels=2, num_classes=0):
    p, d = (1, 9) if levels == 2 else (levels, 6)
    return {"fvsbn": dense.FVSBN(p, levels, num_classes=num_classes),
            "nade": dense.NADE(p, levels, hidden=6, num_classes=num_classes),
            "made": dense.MADE(p, levels, d, hidden=(16, 16), num_masks=3,
                               num_classes=num_classes)}[name]


def _init(numpy_init, model, levels=2, label=None, seed=0):
    x = jnp.zeros((2, *(BINARY if levels == 2 else CATEGORICAL)))
    return numpy_init(model, x, label, scale=2.0, seed=seed)["params"]


def _apply(model, params, mask_index=0, label=None):
    if isinstance(model, dense.MADE):
        return lambda x: model.apply({"params": params}, x, label, mask_index=mask_index)
    return lambda x: model.apply({"params": params}, x, label)


def _order(model, mask_index=0):
    return model.orderings()[mask_index] if isinstance(model, dense.MADE) else np.arange(
        model_dims(model))


def model_dims(model):
    return 9 if model.num_params == 1 else 6


def _joint(apply_fn, x, log_prob_fn):
    return log_prob_fn(apply_fn(x), x).reshape(x.shape[0], -1).sum(1)


CASES = [("fvsbn", 0, 2), ("nade", 0, 2), ("made", 0, 2), ("made", 1, 2), ("made", 2, 2),
         ("nade", 0, 3), ("made", 2, 3)]


@pytest.mark.parametrize("name,mask_index,levels", CASES)
def test_jacobian_is_strictly_triangular_in_the_ordering(numpy_init, name, mask_index, levels):
    model = _model(name, levels)
    params = _init(numpy_init, model, levels)
    event = BINARY if levels == 2 else CATEGORICAL
    d, p = model_dims(model), model.num_params
    apply_fn = _apply(model, params, mask_index)
    f = lambda v: apply_fn(v.reshape(1, *event))[0].reshape(d, p)  # [D] -> [D, P]
    x = np.random.default_rng(1).uniform(0, levels - 1, size=d).astype(np.float32)
    jac = np.asarray(jax.jit(jax.jacfwd(f))(jnp.asarray(x)))  # [D, P, D]
    rank = np.argsort(_order(model, mask_index))  # rank[j]: position of dimension j
    later = rank[None, :] >= rank[:, None]  # [i, j]: j at or after i in the ordering
    reach = np.abs(jac).max(axis=1) > 0  # [D, D]
    assert not np.any(reach & later), np.argwhere(reach & later)
    earlier = ~later
    if name == "made":  # ReLU units can be off at this x; some earlier inputs must reach
        assert reach[earlier].mean() > 0.3, reach[earlier].mean()
    else:  # sigmoid / linear: every earlier input reaches
        assert np.all(reach[earlier]), np.argwhere(earlier & ~reach)


@pytest.mark.parametrize("name", ["fvsbn", "nade", "made"])
def test_binary_probabilities_sum_to_one_over_all_512_images(numpy_init, name):
    model = _model(name)
    params = _init(numpy_init, model)
    log_prob_fn, _ = _likelihood(2)
    x = jnp.asarray(ALL_BINARY)
    num_masks = model.num_masks if name == "made" else 1

    def log_probs(v):  # [K, N] one row per mask, and [N] the ensemble (MADE)
        single = jnp.stack([_joint(_apply(model, params, k), v, log_prob_fn)
                            for k in range(num_masks)])
        ensemble = dense.made_log_prob(model, params, v, log_prob_fn) if name == "made" else None
        return single, ensemble

    single, ensemble = jax.jit(log_probs)(x)
    np.testing.assert_allclose(jax.nn.logsumexp(single, axis=1), 0.0, atol=2e-5)
    assert np.all(np.ptp(np.asarray(single), axis=1) > 1.0)  # not the uniform distribution
    if name == "made":
        np.testing.assert_allclose(jax.nn.logsumexp(ensemble), 0.0, atol=2e-5)
        assert np.abs(np.asarray(ensemble - single[0])).max() > 1e-2  # the masks do differ
        np.testing.assert_allclose(ensemble, jax.nn.logsumexp(single, 0) - np.log(3), atol=1e-5)


@pytest.mark.parametrize("name", ["nade", "made"])
def test_categorical_probabilities_sum_to_one_over_all_729_configurations(numpy_init, name):
    model = _model(name, levels=3, num_classes=2)
    params = _init(numpy_init, model, 3, label=jnp.zeros((2,), jnp.int32))
    log_prob_fn, _ = _likelihood(3)
    x = jnp.asarray(ALL_TERNARY)
    for label in (0, 1):
        y = jnp.full((x.shape[0],), label, jnp.int32)
        if name == "made":
            fn = lambda v, y: dense.made_log_prob(model, params, v, log_prob_fn, y)
        else:
            fn = lambda v, y: _joint(_apply(model, params, label=y), v, log_prob_fn)
        log_p = jax.jit(fn)(x, y)
        np.testing.assert_allclose(jax.nn.logsumexp(log_p), 0.0, atol=2e-5)
        if label == 0:
            first = log_p
    assert np.abs(np.asarray(log_p - first)).max() > 1e-2  # the label changes p(x)


@pytest.mark.parametrize("name,mask_index,levels", CASES)
def test_sequential_terms_sum_to_the_parallel_log_prob(numpy_init, name, mask_index, levels):
    model = _model(name, levels)
    params = _init(numpy_init, model, levels)
    log_prob_fn, _ = _likelihood(levels)
    x = jnp.asarray((ALL_BINARY if levels == 2 else ALL_TERNARY)[::37])
    apply_fn = _apply(model, params, mask_index)
    order = _order(model, mask_index)
    run = jax.jit(lambda v: (_joint(apply_fn, v, log_prob_fn),
                             sampling.sequential_log_prob(apply_fn, v, log_prob_fn, order)))
    parallel, sequential = run(x)
    np.testing.assert_allclose(sequential, parallel, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("levels,num_classes", [(2, 0), (3, 3)])
def test_nade_cached_sampler_equals_the_naive_sampler_at_a_fraction_of_the_cost(
        numpy_init, levels, num_classes):
    """Same key, same samples; the cost is O(DH) against O(D^2 H): XLA's flop counts. A
    deterministic "draw" that writes each conditional's mean into x (a continuous recursion)
    compares the two samplers' conditionals themselves, to float tolerance."""
    model = _model("nade", levels, num_classes)
    label = jnp.arange(64) % 3 if num_classes else None
    params = _init(numpy_init, model, levels, label=None if label is None else label[:2])
    _, draw = _likelihood(levels)
    log_probs = functools.partial(outputs.level_log_probs, "bernoulli" if levels == 2 else
                                  "categorical", num_levels=levels)
    mean = lambda key, raw, t: jnp.exp(log_probs(raw)) @ jnp.arange(levels, dtype=jnp.float32)
    x_init = jnp.zeros((64, *(BINARY if levels == 2 else CATEGORICAL)))
    apply_fn = _apply(model, params, label=label)
    naive = lambda k: [sampling.naive_sample(apply_fn, k, x_init, draw=f, temperature=1.0)
                       for f in (draw, mean)]
    cached = lambda k: [dense.nade_sample(model, params, k, x_init, draw=f, temperature=1.0,
                                          label=label) for f in (draw, mean)]
    naive, cached = (jax.jit(f).lower(jax.random.key(0)).compile() for f in (naive, cached))
    (a, mean_a), (b, mean_b) = naive(jax.random.key(3)), cached(jax.random.key(3))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(mean_b, mean_a, rtol=1e-5, atol=1e-6)
    assert np.ptp(np.asarray(mean_a)) > 0.1
    assert np.any(a != cached(jax.random.key(4))[0])  # samples depend on the key
    assert 0.05 < float(jnp.mean(a)) / (levels - 1) < 0.95  # not a constant image
    flops = [f.cost_analysis()["flops"] for f in (naive, cached)]
    assert flops[1] < flops[0] / 2, flops


@pytest.mark.parametrize("mask_index", [0, 1, 2])
def test_made_greedy_sample_is_a_fixed_point_under_its_ordering(numpy_init, mask_index):
    """At T -> 0 each dimension is its conditional's mode given the earlier ones; drawn in
    the mask's ordering, the final x is its own greedy completion: x_d = [logit_d(x) > 0]."""
    model = _model("made")
    params = _init(numpy_init, model, seed=mask_index)
    _, draw = _likelihood(2)
    x_init = jnp.zeros((32, *BINARY))
    apply_fn = _apply(model, params, mask_index)

    def run(k):
        x = dense.made_sample(model, params, k, x_init, draw=draw, temperature=1e-6,
                              mask_index=mask_index)
        raster = sampling.naive_sample(apply_fn, k, x_init, draw=draw, temperature=1e-6)
        return x, apply_fn(x)[..., 0], raster, apply_fn(raster)[..., 0]

    x, logits, raster, raster_logits = jax.jit(run)(jax.random.key(0))
    np.testing.assert_array_equal(x, (logits > 0).astype(np.float32))
    if mask_index > 0:  # the wrong ordering breaks the fixed point for some example
        assert np.any((raster_logits > 0).astype(np.float32) != raster)


def test_made_masks_have_no_dead_units_and_valid_orderings():
    for seed, hidden in itertools.product(range(5), [(16, 16), (3, 3, 3), (1, 2)]):
        orders, masks = dense.made_masks(9, hidden, 4, seed, True)
        np.testing.assert_array_equal(orders[0], np.arange(9))
        for order in orders:
            np.testing.assert_array_equal(np.sort(order), np.arange(9))
        assert len({tuple(o) for o in orders}) == 4
        for layer in range(len(hidden)):
            assert np.all(masks[layer].max(axis=1) > 0)  # [K, out]: every unit has an input
            assert np.all(masks[layer + 1].max(axis=2) > 0)  # [K, in]: and an output
    model = dense.MADE(2, 3, 9, hidden=(3, 3), num_masks=2, natural_ordering=False)
    assert not np.array_equal(model.orderings()[0], np.arange(9))


def test_made_takes_a_given_ordering_and_is_autoregressive_in_it(numpy_init):
    """model.ordering: mask 0 draws the given permutation, and its Jacobian is strictly
    triangular in that ordering (not in the raster one); the other masks stay drawn."""
    given = (4, 0, 8, 2, 6, 1, 7, 3, 5)
    model = dense.MADE(1, 2, 9, hidden=(16, 16), num_masks=2, ordering=given)
    np.testing.assert_array_equal(model.orderings()[0], given)
    assert sorted(model.orderings()[1]) == list(range(9))
    params = _init(numpy_init, model)
    x = jnp.asarray(ALL_BINARY[:1])
    jac = jax.jacfwd(lambda v: _apply(model, params, 0)(v)[0, ..., 0].reshape(9))(x)
    jac = np.abs(np.asarray(jac).reshape(9, 9))  # [i, j]: d raw_i / d x_j
    rank = np.argsort(given)
    assert np.all(jac[rank[None, :] >= rank[:, None]] == 0)
    assert jac[given[-1], given[0]] > 0  # the last dimension sees the first
    with pytest.raises(ValueError, match="shape \\(8,\\)"):
        dense.MADE(1, 2, 9, ordering=given[:8]).orderings()
    with pytest.raises(ValueError, match="permutation of 0..8"):
        dense.MADE(1, 2, 9, ordering=(0, 0, 1, 2, 3, 4, 5, 6, 7)).orderings()


def test_class_conditional_nets_use_the_label_and_refuse_none(numpy_init):
    for name in ("fvsbn", "nade", "made"):
        model = _model(name, num_classes=2)
        params = dict(_init(numpy_init, model, label=jnp.zeros((2,), jnp.int32)))
        if name != "fvsbn":  # the label reaches the hidden units, not only the output bias
            params["class_bias"] = jnp.zeros_like(params["class_bias"])
        x = jnp.asarray(ALL_BINARY[:4])
        run = jax.jit(lambda v: [_apply(model, params, label=jnp.full((4,), y))(v)
                                 for y in (0, 1)])
        raw = run(x)
        assert np.abs(np.asarray(raw[0] - raw[1])).max() > 1e-3, name
        with pytest.raises(ValueError, match="class-conditional"):
            jax.eval_shape(_apply(model, params), x)


def test_bad_inputs_are_refused(numpy_init):
    model = dense.MADE(1, 2, 9, hidden=(4,))
    params = numpy_init(model, jnp.zeros((1, *BINARY)))["params"]
    with pytest.raises(ValueError, match="num_dims=9"):
        jax.eval_shape(lambda v: model.apply({"params": params}, v), jnp.zeros((1, 2, 2, 1)))
    with pytest.raises(ValueError, match="at least 2"):
        dense.MADE(1, 2, 1).orderings()
    _, draw = _likelihood(2)
    with pytest.raises(ValueError, match="mask_index"):
        dense.made_sample(model, params, jax.random.key(0), jnp.zeros((1, *BINARY)), draw=draw,
                          temperature=1.0, mask_index=1)
    with pytest.raises(ValueError, match="temperature"):
        dense.nade_sample(dense.NADE(1, 2), {}, jax.random.key(0), jnp.zeros((1, *BINARY)),
                          draw=draw, temperature=0.0)
