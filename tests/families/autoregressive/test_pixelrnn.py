"""PixelRNN, Row LSTM and Diagonal BiLSTM, grey and colour: causal from the Jacobian and by
perturbation of the discrete input (in raster order, and R, G, B within a pixel), the Diagonal
BiLSTM's receptive field complete and the Row LSTM's not, a normalised distribution over every
binary 3x3 grey image and 2x2 colour image, jit against op by op."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.families.autoregressive import outputs, pixelrnn, sampling

GREY = (3, 3, 1)  # D = 9
COLOUR = (2, 2, 3)  # D = 12
TINY = dict(features=12, hidden=12, num_layers=2)  # 4 units per colour group
CASES = [(layer, event) for layer in pixelrnn.LAYERS for event in ("grey", "colour")]


def _event(name):
    return GREY if name == "grey" else COLOUR


@pytest.fixture(scope="module")
def nets(numpy_init):
    """(layer, event, conditional) -> (module, params, likelihood, label or None)."""
    out = {}
    for (layer, event), cond in itertools.product(CASES, (False, True)):
        likelihood = "bernoulli" if cond else "categorical"
        m = pixelrnn.PixelRNN(num_levels=2, num_params=outputs.num_params(likelihood, 2),
                              num_classes=3 if cond else 0, layer=layer, **TINY)
        label = jnp.array([0, 1, 2, 1]) if cond else None
        params = numpy_init(m, jnp.zeros((4, *_event(event))), label, scale=2.0, seed=len(out))
        out[layer, event, cond] = (m, params["params"], likelihood, label)
    return out


@functools.cache
def _jitted(m):
    return jax.jit(lambda params, x, label=None: m.apply({"params": params}, x, label))


def _apply(m, params):
    return functools.partial(_jitted(m), params)


def _jacobian(m, params, event):
    """|d raw_i / d x_j| maxed over the P parameters and 8 random binary inputs (a ReLU may be
    off at one of them): ``[D, D]`` in raster-then-channel order."""
    d = int(np.prod(event))
    xs = jax.random.bernoulli(jax.random.key(1), 0.5, (8, d)).astype(jnp.float32)
    f = lambda flat: m.apply({"params": params}, flat.reshape(1, *event)).reshape(d, -1)
    jac = jax.jit(jax.vmap(jax.jacfwd(f)))(xs)  # [8, D, P, D]
    return np.abs(np.asarray(jac)).max(axis=(0, 2))


def test_skew_and_unskew():
    x = jnp.arange(2 * 3 * 4 * 1, dtype=jnp.float32).reshape(2, 3, 4, 1) + 1
    s = pixelrnn.skew(x)
    assert s.shape == (2, 3, 6, 1)
    np.testing.assert_array_equal(s[0, 1, :, 0], [0, 5, 6, 7, 8, 0])
    np.testing.assert_array_equal(s[0, 2, :, 0], [0, 0, 9, 10, 11, 12])
    np.testing.assert_array_equal(pixelrnn.unskew(s, 4), x)


@pytest.mark.parametrize("layer, event", CASES)
def test_jacobian_is_strictly_lower_triangular_in_raster_and_channel_order(nets, layer, event):
    """d raw_i / d x_j = 0 for every j >= i (the dimension itself and every later one, the
    channels R, G, B in that order within a pixel), and raw_i depends on some earlier
    dimension for every i > 0."""
    m, params, _, _ = nets[layer, event, False]
    jac = _jacobian(m, params, _event(event))
    assert np.all(jac[np.triu_indices(len(jac))] == 0), jac
    assert np.all(jac[1:].max(axis=1) > 0), jac


def test_the_diagonal_bilstm_sees_every_earlier_pixel_and_the_row_lstm_does_not(numpy_init):
    """On 5x5 with a 3x3 first layer (which alone sees one row up): the Diagonal BiLSTM's
    raw_i depends on every x_j with j < i; the Row LSTM's triangular field misses some (e.g.
    the top-right corner from (2, 0), whose cone reaches two columns right two rows up)."""
    event, d = (5, 5, 1), 25
    seen = {}
    for layer in pixelrnn.LAYERS:
        m = pixelrnn.PixelRNN(num_levels=2, num_params=1, features=6, hidden=6, num_layers=2,
                              first_kernel=3, layer=layer)
        params = numpy_init(m, jnp.zeros((1, *event)), scale=2.0)["params"]
        jac = _jacobian(m, params, event)
        assert np.all(jac[np.triu_indices(d)] == 0), layer
        seen[layer] = jac[np.tril_indices(d, -1)] > 0
    assert np.all(seen["diagonal"])
    assert not np.all(seen["row"])


@pytest.mark.parametrize("layer, event, cond", [("row", "grey", True), ("diagonal", "grey", True),
                                               ("row", "colour", False),
                                               ("diagonal", "colour", True)])
def test_changing_dimension_j_leaves_raw_i_unchanged_for_i_at_most_j(nets, layer, event, cond):
    """Exact equality of raw_i for i <= j when x_j flips; some raw_i with i > j moves. One
    example per call: XLA may round a row differently at another batch position."""
    m, params, _, label = nets[layer, event, cond]
    shape = _event(event)
    d = int(np.prod(shape))
    apply = _apply(m, params)
    lab = None if label is None else jnp.array([1])
    flat = jax.random.bernoulli(jax.random.key(2), 0.5, (1, d)).astype(jnp.float32)
    base = np.asarray(apply(flat.reshape(1, *shape), lab)).reshape(d, -1)
    for j in range(d):
        moved = np.asarray(apply(flat.at[0, j].set(1 - flat[0, j]).reshape(1, *shape), lab))
        moved = moved.reshape(d, -1)
        np.testing.assert_array_equal(moved[:j + 1], base[:j + 1], err_msg=f"dimension {j}")
        if j < d - 1:
            assert np.abs(moved[j + 1:] - base[j + 1:]).max() > 0, j


@pytest.mark.parametrize("layer, event, cond", [("row", "grey", False), ("diagonal", "grey", True),
                                               ("row", "colour", True),
                                               ("diagonal", "colour", False)])
def test_probabilities_sum_to_one_over_every_binary_image(nets, layer, event, cond):
    m, params, likelihood, label = nets[layer, event, cond]
    shape = _event(event)
    d = int(np.prod(shape))
    x = jnp.asarray(list(itertools.product([0.0, 1.0], repeat=d))).reshape(-1, *shape)
    for y in ([None] if label is None else [0, 2]):
        lab = None if y is None else jnp.full((x.shape[0],), y)
        raw = _apply(m, params)(x, lab)  # [2^D, *event, P]
        log_p = outputs.log_prob(likelihood, raw, x, 2).reshape(x.shape[0], -1).sum(-1)
        np.testing.assert_allclose(jax.nn.logsumexp(log_p), 0.0, atol=5e-5)
        assert np.ptp(np.asarray(log_p)) > 1.0


@pytest.mark.parametrize("layer", pixelrnn.LAYERS)
def test_jit_and_no_jit_agree_and_the_naive_sampler_runs(nets, layer):
    m, params, likelihood, label = nets[layer, "colour", True]
    x = jax.random.bernoulli(jax.random.key(3), 0.5, (1, *COLOUR)).astype(jnp.float32)
    lab = jnp.array([2])
    jitted = _apply(m, params)(x, lab)
    with jax.disable_jit():
        eager = m.apply({"params": params}, x, lab)
    np.testing.assert_allclose(jitted, eager, atol=1e-5)
    draw = functools.partial(outputs.draw, likelihood, num_levels=2)
    sample = sampling.naive_sample(lambda v: m.apply({"params": params}, v, label),
                                   jax.random.key(0), jnp.zeros((4, *COLOUR)), draw=draw,
                                   temperature=1.0)
    assert sample.shape == (4, *COLOUR) and set(np.unique(sample)) <= {0.0, 1.0}


def test_bad_input_is_refused(nets):
    m, params, _, _ = nets["row", "grey", False]
    with pytest.raises(ValueError, match="images \\[B, H, W, C\\]"):
        m.apply({"params": params}, jnp.zeros((1, 9)))
    with pytest.raises(ValueError, match="num_classes=0"):
        m.apply({"params": params}, jnp.zeros((1, *GREY)), jnp.zeros((1,), jnp.int32))
    mc, pc, _, _ = nets["row", "grey", True]
    with pytest.raises(ValueError, match="pass a label"):
        mc.apply({"params": pc}, jnp.zeros((1, *GREY)))
    with pytest.raises(ValueError, match="layer='column'"):
        jax.eval_shape(pixelrnn.PixelRNN(2, 1, layer="column").init, jax.random.key(0),
                       jnp.zeros((1, *GREY)))
    with pytest.raises(ValueError, match="at least|>= the 3 channels"):
        jax.eval_shape(pixelrnn.PixelRNN(2, 1, features=2).init, jax.random.key(0),
                       jnp.zeros((1, *COLOUR)))
