"""The Row LSTM PixelRNN: causal from the Jacobian and by perturbation of the discrete input
(its receptive field is triangular, so completeness is not claimed), a normalised distribution
over all 2^9 binary 3x3 images, jit against op by op."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.families.autoregressive import outputs, pixelrnn, sampling

EVENT = (3, 3, 1)  # D = 9
D = 9
TINY = dict(features=8, hidden=8, num_layers=2)


@pytest.fixture(scope="module")
def nets(numpy_init):
    """name -> (module, params, likelihood, label or None)."""
    out = {}
    for name, likelihood, classes in (("plain", "categorical", 0), ("cond", "bernoulli", 3)):
        m = pixelrnn.PixelRNN(num_levels=2, num_params=outputs.num_params(likelihood, 2),
                              num_classes=classes, **TINY)
        label = jnp.array([0, 1, 2, 1]) if classes else None
        params = numpy_init(m, jnp.zeros((4, *EVENT)), label, scale=2.0, seed=len(out))
        out[name] = (m, params["params"], likelihood, label)
    return out


@functools.cache
def _jitted(m):
    return jax.jit(lambda params, x, label=None: m.apply({"params": params}, x, label))


def _apply(m, params):
    return functools.partial(_jitted(m), params)


def test_masks():
    a = pixelrnn.causal_mask((3, 3), "A")[:, :, 0, 0]
    b = pixelrnn.causal_mask((1, 3), "B")[:, :, 0, 0]
    np.testing.assert_array_equal(a, [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(b, [[1, 1, 0]])


def test_jacobian_is_strictly_lower_triangular_in_raster_order(nets):
    """d raw_i / d x_j = 0 for every j >= i (the pixel itself and every later pixel), and
    raw_i depends on some earlier pixel for every i > 0."""
    m, params, _, _ = nets["plain"]
    x = jax.random.bernoulli(jax.random.key(1), 0.5, (1, *EVENT)).astype(jnp.float32)
    f = lambda flat: m.apply({"params": params}, flat.reshape(1, *EVENT)).reshape(D, -1)
    jac = np.abs(np.asarray(jax.jit(jax.jacfwd(f))(x.reshape(D)))).max(axis=1)  # [D out, D in]
    assert np.all(jac[np.triu_indices(D)] == 0), jac
    assert np.all(jac[1:].max(axis=1) > 0), jac
    assert np.all(jac[np.tril_indices(D, -1)] > 0)  # 3x3: the 7x7 type-A conv sees it all


@pytest.mark.parametrize("name", ["plain", "cond"])
def test_changing_pixel_j_leaves_raw_i_unchanged_for_i_at_most_j(name, nets):
    """Exact equality of raw_i for i <= j when x_j flips; some raw_i with i > j moves. One
    example per call: XLA may round a row differently at another batch position."""
    m, params, _, label = nets[name]
    apply = _apply(m, params)
    lab = None if label is None else jnp.array([1])
    flat = jax.random.bernoulli(jax.random.key(2), 0.5, (1, D)).astype(jnp.float32)
    base = np.asarray(apply(flat.reshape(1, *EVENT), lab)).reshape(D, -1)
    for j in range(D):
        moved = np.asarray(apply(flat.at[0, j].set(1 - flat[0, j]).reshape(1, *EVENT), lab))
        moved = moved.reshape(D, -1)
        np.testing.assert_array_equal(moved[:j + 1], base[:j + 1], err_msg=f"pixel {j}")
        if j < D - 1:
            assert np.abs(moved[j + 1:] - base[j + 1:]).max() > 0, j


@pytest.mark.parametrize("name", ["plain", "cond"])
def test_probabilities_sum_to_one_over_all_binary_3x3_images(name, nets):
    m, params, likelihood, label = nets[name]
    x = jnp.asarray(list(itertools.product([0.0, 1.0], repeat=D))).reshape(-1, *EVENT)
    for y in ([None] if label is None else [0, 2]):
        lab = None if y is None else jnp.full((x.shape[0],), y)
        raw = _apply(m, params)(x, lab)  # [512, 3, 3, 1, P]
        log_p = outputs.log_prob(likelihood, raw, x, 2).reshape(x.shape[0], -1).sum(-1)
        np.testing.assert_allclose(jax.nn.logsumexp(log_p), 0.0, atol=2e-5)
        assert np.ptp(np.asarray(log_p)) > 1.0


def test_jit_and_no_jit_agree_and_the_naive_sampler_runs(nets):
    m, params, likelihood, label = nets["cond"]
    x = jax.random.bernoulli(jax.random.key(3), 0.5, (1, *EVENT)).astype(jnp.float32)
    lab = jnp.array([2])
    jitted = _apply(m, params)(x, lab)
    with jax.disable_jit():
        eager = m.apply({"params": params}, x, lab)
    np.testing.assert_allclose(jitted, eager, atol=1e-5)
    draw = functools.partial(outputs.draw, likelihood, num_levels=2)
    sample = sampling.naive_sample(lambda v: m.apply({"params": params}, v, label),
                                   jax.random.key(0), jnp.zeros((4, *EVENT)), draw=draw,
                                   temperature=1.0)
    assert sample.shape == (4, *EVENT) and set(np.unique(sample)) <= {0.0, 1.0}


def test_bad_input_is_refused(nets):
    m, params, _, _ = nets["plain"]
    with pytest.raises(ValueError, match="grayscale"):
        m.apply({"params": params}, jnp.zeros((1, 3, 3, 3)))
    with pytest.raises(ValueError, match="num_classes=0"):
        m.apply({"params": params}, jnp.zeros((1, *EVENT)), jnp.zeros((1,), jnp.int32))
    mc, pc, _, _ = nets["cond"]
    with pytest.raises(ValueError, match="pass a label"):
        mc.apply({"params": pc}, jnp.zeros((1, *EVENT)))
