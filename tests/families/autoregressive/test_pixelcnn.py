"""PixelCNN and the gated PixelCNN: the autoregressive property and the blind spot from the
Jacobian, normalisation over every tiny image, the cached samplers against the naive one, and
transformation hygiene."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.families.autoregressive import outputs, sampling
from gmzoo.families.autoregressive.pixelcnn import GatedPixelCNN, PixelCNN, causal_mask
from gmzoo.families.autoregressive.pixelcnn_cache import gated_pixelcnn_sample, pixelcnn_sample

SAMPLERS = {PixelCNN: pixelcnn_sample, GatedPixelCNN: gated_pixelcnn_sample}


def _model(cls, numpy_init, *, channels=1, levels=2, likelihood="bernoulli", classes=0,
           shape=(5, 5), batch=1, seed=0, scale=1.0, **fields):
    p = outputs.num_params(likelihood, levels)
    fields = {"features": 6, "num_layers": 2, **fields}
    model = cls(num_params=p, num_levels=levels, num_classes=classes, num_channels=channels,
                **fields)
    x = jnp.zeros((batch, *shape, channels))
    label = jnp.arange(batch) % classes if classes else None
    return model, numpy_init(model, x, label, seed=seed, scale=scale), x, label


def _dependence(model, params, label, levels=2, num=4):
    """``[D_out, D_in]`` booleans: raw of flat dimension d_out (5x5 images) moves with input
    d_in at one of ``num`` random images (several, so a ReLU off at one image hides nothing)."""
    shape = (1, 5, 5, model.num_channels)
    d = int(np.prod(shape))
    f = lambda flat: model.apply(params, flat.reshape(shape), label).reshape(d, -1)
    xs = np.random.default_rng(1).integers(0, levels, (num, d)).astype(np.float32)
    jac = jax.jit(jax.vmap(jax.jacfwd(f)))(jnp.asarray(xs))  # [num, D, P, D]
    return np.asarray(jnp.any(jac != 0, axis=(0, 2)))


def test_causal_mask_channel_groups():
    """3x3, C = 3 groups of one feature: taps before the centre all kept, after it none; at the
    centre type A is strictly lower triangular over groups, type B lower triangular."""
    g = np.arange(3)
    a = causal_mask((3, 3, 3, 3), (1, 1), "A", g, g)
    b = causal_mask((3, 3, 3, 3), (1, 1), "B", g, g)
    assert a[0].all() and a[1, 0].all() and not a[1, 2].any() and not a[2].any()
    np.testing.assert_array_equal(a[1, 1], np.triu(np.ones((3, 3)), 1))  # [in, out]: in < out
    np.testing.assert_array_equal(b[1, 1], np.triu(np.ones((3, 3))))


def _flat(i, j, c=0, width=5, channels=1):
    return (i * width + j) * channels + c


@pytest.mark.parametrize("channels", [1, 3])
def test_plain_pixelcnn_is_autoregressive_with_a_blind_spot(channels, numpy_init):
    """Output dimension d = (i W + j) C + c never depends on inputs >= d: not on pixel (i, j)
    itself for C = 1, only on its channels < c for C = 3 (and G, B do depend on R). The blind
    spot: from output (2, 0) of a 5x5 image, the earlier pixel (1, 4) has zero derivative (the
    7x7 type-A layer reaches 3 columns right, each 3x3 layer one more column per row up, so
    (i - 1, j + 4) is never seen, however many layers), while (1, 3) is seen."""
    model, params, _, label = _model(PixelCNN, numpy_init, channels=channels, levels=4,
                                     likelihood="categorical", classes=2, num_layers=3,
                                     features=8 * channels)
    dep = _dependence(model, params, label, levels=4)
    assert not np.triu(dep).any()
    flat = functools.partial(_flat, channels=channels)
    out = [flat(2, 0, c) for c in range(channels)]
    assert not dep[np.ix_(out, [flat(1, 4, c) for c in range(channels)])].any()
    assert dep[np.ix_(out, [flat(1, 3, c) for c in range(channels)])].all()
    if channels == 3:
        assert dep[1, 0] and dep[2, 0] and dep[2, 1]  # G <- R, B <- R and G at pixel (0, 0)


@pytest.mark.parametrize("channels", [1, 3])
def test_gated_pixelcnn_is_autoregressive_without_blind_spot(channels, numpy_init):
    """Five gated layers of 3x3 (the first layer too) on 5x5: the receptive field of every
    output covers every earlier input (vertical stack: rows i-1-k..i, columns j-k-1..j+k+1
    after layer k, reaching row i through the shift; horizontal: columns j-5..j-1), so the
    derivative is non-zero at every dimension before the output's, channels < c of its own
    pixel included, and zero at and after it: exactly the strict lower triangle."""
    model, params, _, label = _model(GatedPixelCNN, numpy_init, channels=channels, num_layers=5,
                                     first_kernel=3, classes=2, features=8 * channels)
    dep = _dependence(model, params, label)
    np.testing.assert_array_equal(dep, np.tril(np.ones_like(dep), -1))


def _all_binary_images(shape):
    return jnp.asarray(list(itertools.product([0.0, 1.0], repeat=int(np.prod(shape)))),
                       jnp.float32).reshape(-1, *shape)


@pytest.mark.parametrize("cls", [PixelCNN, GatedPixelCNN])
def test_probabilities_sum_to_one(cls, numpy_init):
    """sum over all 2^9 binary 3x3 images of p(x) = 1 (Bernoulli, with a label), and over all
    2^12 binary 2x2 RGB images with the categorical likelihood (the channel-group masks)."""
    for channels, shape, name in ((1, (3, 3), "bernoulli"), (3, (2, 2), "categorical")):
        model, params, _, _ = _model(cls, numpy_init, channels=channels, likelihood=name,
                                     classes=3, shape=shape)
        x = _all_binary_images((*shape, channels))  # [N, H, W, C]
        label = jnp.full((x.shape[0],), 2)
        raw = jax.jit(model.apply)(params, x, label)
        log_p = outputs.log_prob(name, raw, x, 2).reshape(x.shape[0], -1).sum(-1)  # [N]
        np.testing.assert_allclose(jax.nn.logsumexp(log_p), 0.0, atol=1e-4)
        assert float(jnp.std(log_p)) > 0.1  # not the uniform distribution


CASES = [  # (model, channels, levels, likelihood, classes): each model both ways
    (PixelCNN, 1, 2, "bernoulli", 0),
    (PixelCNN, 3, 4, "categorical", 3),
    (GatedPixelCNN, 1, 2, "bernoulli", 3),
    (GatedPixelCNN, 3, 4, "categorical", 0),
]


@pytest.mark.parametrize("cls,channels,levels,likelihood,classes", CASES)
def test_cached_sampler_equals_naive_sampler(cls, channels, levels, likelihood, classes,
                                             numpy_init):
    """Same key, same samples as ``sampling.naive_sample`` (whole network per dimension),
    first layer 5x5 so the caches span two rows above; weights 3x the usual scale so that the
    conditionals move with their context and a cache holding the wrong rows changes the
    samples."""
    model, params, x, label = _model(cls, numpy_init, channels=channels, levels=levels,
                                     likelihood=likelihood, classes=classes, batch=4,
                                     first_kernel=5, features=4, scale=3.0)
    draw = functools.partial(outputs.draw, likelihood, num_levels=levels)
    cached = functools.partial(SAMPLERS[cls], model, params["params"], draw=draw, temperature=0.8,
                               label=label)
    naive = functools.partial(sampling.naive_sample, lambda v: model.apply(params, v, label),
                              draw=draw, temperature=0.8)
    key = jax.random.key(7)
    fast, slow = jax.jit(lambda k: (cached(k, x), naive(k, x)))(key)
    np.testing.assert_array_equal(fast, slow)
    assert fast.shape == x.shape and 0 < float(fast.mean()) < levels - 1
    assert len(np.unique(np.asarray(fast).reshape(4, -1), axis=0)) > 1


@pytest.mark.parametrize("cls", [PixelCNN, GatedPixelCNN])
def test_jit_and_no_jit_agree_and_no_retrace(cls, numpy_init):
    """The forward and the cached sampler give the same values under ``jax.jit`` and called
    as they are (op by op, the scans compiled on their own); a second jitted call with new
    parameters and key does not trace again."""
    model, params, x, label = _model(cls, numpy_init, classes=2, shape=(2, 3), batch=2,
                                     first_kernel=3, features=4, num_layers=1)
    draw = functools.partial(outputs.draw, "bernoulli", num_levels=2)
    traces = []

    def run(params, key, x):
        traces.append(1)
        x_new = SAMPLERS[cls](model, params["params"], key, x, draw=draw, temperature=1.0,
                              label=label)
        return model.apply(params, x_new, label), x_new

    jitted = jax.jit(run)
    raw, sample = jitted(params, jax.random.key(0), x)
    raw_eager, sample_eager = run(params, jax.random.key(0), x)
    np.testing.assert_array_equal(sample, sample_eager)
    np.testing.assert_allclose(raw, raw_eager, atol=1e-5)
    count = len(traces)
    params2 = jax.tree.map(lambda p: p * 1.1, params)
    raw2, _ = jitted(params2, jax.random.key(1), x)
    assert len(traces) == count
    assert np.all(np.isfinite(raw)) and not np.allclose(raw, raw2)


def test_refuses_wrong_channels_and_labels(numpy_init):
    model, params, x, label = _model(GatedPixelCNN, numpy_init, classes=2)
    with pytest.raises(ValueError, match=r"x \[B, H, W, 1\]"):
        model.apply(params, jnp.zeros((1, 5, 5, 3)), label)
    with pytest.raises(ValueError, match="class-conditional"):
        model.apply(params, x)
    with pytest.raises(ValueError, match="unconditional"):
        PixelCNN(features=4, num_layers=1).init(jax.random.key(0), x, label)
    with pytest.raises(ValueError, match="odd sizes"):
        GatedPixelCNN(kernel=4).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="temperature"):
        gated_pixelcnn_sample(model, params, jax.random.key(0), x, draw=None, temperature=0.0,
                              label=label)
