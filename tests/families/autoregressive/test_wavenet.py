"""WaveNet: the receptive field and causality read off the Jacobian of raw w.r.t. x, a
normalised distribution over all 3^4 sequences, cached decoding equal to the full forward pass,
the fast-wavenet sampler equal to the naive sampler under the same key (with and without a
label, on a signal and on a raster-scanned image), and jit / no-jit agreement."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.families.autoregressive import outputs, sampling
from gmzoo.families.autoregressive import wavenet as wn

TINY = dict(residual_channels=8, gate_channels=8, skip_channels=8)


def _model(num_levels, likelihood, **kw):
    return wn.WaveNet(num_levels=num_levels, num_params=outputs.num_params(likelihood, num_levels),
                      **{**TINY, **kw})


def _params(numpy_init, m, event, label=None, seed=0):
    x = jnp.zeros((len(label) if label is not None else 2, *event))
    return numpy_init(m, x, label, scale=1.5, seed=seed)["params"]


def test_receptive_field_formula():
    """(k - 1) sum(dilations) + input_kernel_size: the paper's Fig. 3 (k = 2, dilations 1, 2, 4,
    8: 16 inputs) and two others worked by hand."""
    assert wn.receptive_field(2, (1, 2, 4, 8)) == 16
    assert wn.receptive_field(3, (1, 2, 1, 2)) == 13
    assert wn.receptive_field(2, (1, 2, 4), input_kernel_size=3) == 10


@pytest.mark.parametrize("config, event", [
    (dict(kernel_size=2, dilations=(1, 2, 4), num_stacks=2), (20, 1, 1)),
    (dict(kernel_size=3, dilations=(1, 3), input_kernel_size=2, embedding_dim=4), (3, 5, 1)),
])
def test_jacobian_is_causal_and_covers_the_receptive_field(config, event, numpy_init):
    """d raw_i / d x_j (any of the P outputs) is non-zero exactly for i - R <= j < i (R the
    receptive field): zero at and after i, and no holes; the last output sees exactly R
    inputs. The second case is an image raster-scanned into a sequence."""
    levels = 4
    m = _model(levels, "categorical", **config)
    params = _params(numpy_init, m, event)
    d = int(np.prod(event))
    r = wn.receptive_field(m.kernel_size, m.layer_dilations, m.input_kernel_size)
    assert d > r  # the last output's field is not cut off by the start of the sequence
    x = jax.random.randint(jax.random.key(1), (1, *event), 0, levels).astype(jnp.float32)

    def f(flat):  # [D] -> [D, P]
        raw = m.apply({"params": params}, flat.reshape(1, *event))
        assert raw.shape == (1, *event, levels)
        return raw.reshape(d, levels)

    jac = jax.jit(jax.jacrev(f))(x.reshape(d))  # [D, P, D]
    depends = np.asarray(jnp.any(jac != 0.0, axis=1))  # [D out, D in]
    i, j = np.meshgrid(np.arange(d), np.arange(d), indexing="ij")
    np.testing.assert_array_equal(depends, (j < i) & (j >= i - r))
    assert depends[-1].sum() == r


def _all_sequences(event, levels):
    d = int(np.prod(event))
    return jnp.asarray(list(itertools.product(range(levels), repeat=d)),
                       jnp.float32).reshape(-1, *event)


@pytest.mark.parametrize("event", [(4, 1, 1), (2, 2, 1)])
@pytest.mark.parametrize("num_classes", [0, 2])
def test_probabilities_sum_to_one(event, num_classes, numpy_init):
    """sum over all 3^4 = 81 sequences of prod_d p(x_d | x_<d) is 1 (per class); a network
    that peeked at x_d would give a sum far from 1."""
    levels = 3
    m = _model(levels, "categorical", kernel_size=2, dilations=(1, 2), num_classes=num_classes)
    xs = _all_sequences(event, levels)  # [81, *event]
    labels = [None] if not num_classes else [jnp.full((len(xs),), y) for y in range(num_classes)]
    params = _params(numpy_init, m, event, labels[0])
    for label in labels:
        raw = jax.jit(lambda x, y: m.apply({"params": params}, x, y))(xs, label)
        lp = outputs.log_prob("categorical", raw, xs, levels).reshape(len(xs), -1).sum(-1)
        assert float(jax.nn.logsumexp(lp)) == pytest.approx(0.0, abs=1e-5)


def test_label_conditions_the_output_and_is_checked(numpy_init):
    """The class changes raw; a conditional net refuses a missing label, an unconditional one
    refuses a label."""
    event = (6, 1, 1)
    m = _model(3, "categorical", dilations=(1, 2), num_classes=3)
    label = jnp.array([0, 2])
    params = _params(numpy_init, m, event, label)
    x = jnp.ones((2, *event))
    apply = jax.jit(lambda y: m.apply({"params": params}, x, y))
    a, b = apply(label), apply(jnp.array([1, 1]))
    assert float(jnp.abs(a - b).max()) > 1e-3
    with pytest.raises(ValueError, match="pass a label"):
        m.apply({"params": params}, x)
    plain = _model(3, "categorical", dilations=(1, 2))
    with pytest.raises(ValueError, match="num_classes=0"):
        plain.apply({"params": _params(numpy_init, plain, event)}, x, label)
    with pytest.raises(ValueError, match="kernel_size=0"):
        _model(3, "categorical", kernel_size=0).init(jax.random.key(0), x)


CASES = {  # name -> (event, levels, likelihood, model fields, with a label)
    "signal": ((16, 1, 1), 5, "categorical",
               dict(kernel_size=2, dilations=(1, 4), num_stacks=2, input_kernel_size=2),
               False),
    "image_label": ((4, 5, 1), 2, "bernoulli",
                    dict(kernel_size=3, dilations=(1, 3), embedding_dim=6, num_classes=3), True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_cached_sampler_equals_naive_sampler(name, numpy_init):
    """Under the same key the fast-wavenet sampler draws exactly the naive sampler's values
    (the whole network re-run per dimension), and teacher-forced decoding through the queues
    gives the full forward pass's raw at every position."""
    event, levels, likelihood, fields, conditional = CASES[name]
    m = _model(levels, likelihood, **fields)
    label = jnp.array([0, 1, 2, 1]) % m.num_classes if conditional else None
    params = _params(numpy_init, m, event, label, seed=3)
    x0 = jnp.zeros((4, *event))
    draw = functools.partial(outputs.draw, likelihood, num_levels=levels)
    apply = lambda x: m.apply({"params": params}, x, label)  # noqa: E731

    @jax.jit
    def run(key):  # one compiled program for all four
        a = wn.wavenet_sample(m, params, key, x0, draw=draw, temperature=1.0, label=label)
        b = sampling.naive_sample(apply, key, x0, draw=draw, temperature=1.0)
        return a, b, apply(a), wn.wavenet_cached_raw(m, params, a, label)

    for seed in (0, 1):
        a, b, full, via_cache = run(jax.random.key(seed))
        assert a.shape == x0.shape
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert len(np.unique(np.asarray(a))) >= 2  # not a constant sample
        np.testing.assert_allclose(np.asarray(via_cache), np.asarray(full), atol=1e-5)


def test_jit_and_no_jit_agree_and_no_retrace(numpy_init):
    """The forward pass gives the same raw compiled and op by op; a second jitted sampler call
    with a new key does not trace again; a temperature <= 0 is refused before any compute."""
    event, levels = (5, 1, 1), 4
    m = _model(levels, "categorical", dilations=(1, 2), input_kernel_size=2, embedding_dim=3,
               num_classes=2)
    label = jnp.array([1])
    params = _params(numpy_init, m, event, label)
    x = jax.random.randint(jax.random.key(2), (1, *event), 0, levels).astype(jnp.float32)
    jitted = jax.jit(lambda x, y: m.apply({"params": params}, x, y))(x, label)
    with jax.disable_jit():
        eager = m.apply({"params": params}, x, label)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), atol=1e-5)
    assert float(jnp.abs(eager).max()) > 0.1

    draw = functools.partial(outputs.draw, "categorical", num_levels=levels)
    traces = []

    def sample(key):
        traces.append(1)
        return wn.wavenet_sample(m, params, key, jnp.zeros_like(x), draw=draw, temperature=0.7,
                                 label=label)

    sampler = jax.jit(sample)
    a, b = sampler(jax.random.key(5)), sampler(jax.random.key(6))
    assert len(traces) == 1 and a.shape == b.shape == x.shape
    with pytest.raises(ValueError, match="temperature"):
        wn.wavenet_sample(m, params, jax.random.key(0), x, draw=draw, temperature=0.0,
                          label=label)


def test_default_wavenet_takes_the_tones_set_and_images():
    """Shapes only (``jax.eval_shape``, nothing compiled): the default network on a batch of
    the mu-law tones ``[B, 256, 1, 1]`` gives raw ``[B, 256, 1, 1, 256]``, and on 28x28 images
    ``[B, 28, 28, 1, P]``; its receptive field is 128 samples."""
    from gmzoo.data.signals import load_tones

    batch = jnp.asarray(load_tones("test").images[:2], jnp.float32)  # [2, 256, 1, 1]
    m = wn.WaveNet(num_levels=256, num_params=256)
    variables = jax.eval_shape(m.init, jax.random.key(0), batch)
    assert jax.eval_shape(m.apply, variables, batch).shape == (2, 256, 1, 1, 256)
    assert wn.receptive_field(m.kernel_size, m.layer_dilations) == 128
    binary = wn.WaveNet(num_levels=2, num_params=1)
    x = jnp.zeros((3, 28, 28, 1))
    variables = jax.eval_shape(binary.init, jax.random.key(0), x)
    assert jax.eval_shape(binary.apply, variables, x).shape == (3, 28, 28, 1, 1)
