"""The autoregressive transformer: causal by perturbation (tokens are discrete, so the Jacobian
is read off by changing one token), a normalised distribution over all 2^9 binary 3x3 images,
cached decoding equal to the full forward pass and the key-value-cache sampler equal to the
naive sampler under the same key, with and without a class label."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.families.autoregressive import outputs, sampling
from gmzoo.families.autoregressive import transformer as tr

EVENT = (3, 3, 1)  # D = 9
EVENT_16 = (4, 4, 1)  # D = 16
TINY = dict(d_model=16, num_heads=2, num_layers=2, mlp_ratio=2)


def _model(event, num_levels, likelihood, num_classes=0):
    return tr.ARTransformer(num_levels=num_levels, max_len=int(np.prod(event)),
                            num_params=outputs.num_params(likelihood, num_levels),
                            num_classes=num_classes, **TINY)


@pytest.fixture(scope="module")
def nets(numpy_init):
    """name -> (module, params, likelihood, num_levels, event, label or None)."""
    specs = {"plain": (EVENT, 2, "categorical", 0), "cond": (EVENT, 2, "bernoulli", 3),
             "levels": (EVENT_16, 4, "categorical", 0)}
    out = {}
    for name, (event, levels, likelihood, classes) in specs.items():
        m = _model(event, levels, likelihood, classes)
        label = jnp.array([0, 1, 2, 1]) if classes else None
        x = jnp.zeros((4, *event))
        params = numpy_init(m, x, label, scale=2.0, seed=len(out))["params"]
        out[name] = (m, params, likelihood, levels, event, label)
    return out


@functools.cache
def _jitted(m):
    return jax.jit(lambda params, x, label=None: m.apply({"params": params}, x, label))


def _apply(m, params):
    """The jitted forward pass, one per module (so tests share its compiled programs)."""
    return functools.partial(_jitted(m), params)


def _all_binary_images(event):
    d = int(np.prod(event))
    return jnp.asarray(list(itertools.product([0.0, 1.0], repeat=d))).reshape(-1, *event)


@pytest.mark.parametrize("name", ["plain", "cond", "levels"])
def test_raw_i_depends_on_exactly_the_tokens_before_i(name, nets):
    """Changing token j leaves raw_i bitwise unchanged for every i <= j and changes raw_i for
    every i > j (the transformer sees the whole past, unlike a conv net's receptive field).
    One example per call: XLA may round a row differently at another batch position."""
    m, params, _, levels, event, label = nets[name]
    d = int(np.prod(event))
    apply = _apply(m, params)
    lab = None if label is None else jnp.array([2])
    flat = jax.random.randint(jax.random.key(3), (1, d), 0, levels).astype(jnp.float32)
    base = np.asarray(apply(flat.reshape(1, *event), lab)).reshape(d, -1)  # [D, P]
    assert base.shape[-1] == m.num_params
    for j in range(d):
        x = flat.at[0, j].set((flat[0, j] + 1) % levels).reshape(1, *event)
        moved = np.asarray(apply(x, lab)).reshape(d, -1)
        np.testing.assert_array_equal(moved[:j + 1], base[:j + 1], err_msg=f"token {j}")
        diff = np.abs(moved[j + 1:] - base[j + 1:]).max(axis=-1)  # [D - j - 1]
        assert np.all(diff > 0), (j, diff)


def test_the_label_reaches_every_position(nets):
    m, params, *_ = nets["cond"]
    x = jnp.zeros((1, *EVENT))
    flat = [np.asarray(_apply(m, params)(x, jnp.array([y]))).ravel() for y in range(3)]  # [9]
    assert np.all(np.abs(flat[0] - flat[1]) > 0) and np.all(np.abs(flat[1] - flat[2]) > 0)


@pytest.mark.parametrize("name", ["plain", "cond"])
def test_probabilities_sum_to_one_over_all_binary_3x3_images(name, nets):
    """sum_x p(x) = 1 over the 512 images, for each label; a network that saw x_d or later
    dimensions when predicting x_d would not normalise. The distribution is not uniform."""
    m, params, likelihood, levels, event, label = nets[name]
    x = _all_binary_images(event)  # [512, 3, 3, 1]
    for y in ([None] if label is None else [0, 1, 2]):
        lab = None if y is None else jnp.full((x.shape[0],), y)
        raw = _apply(m, params)(x, lab)
        log_p = outputs.log_prob(likelihood, raw, x, levels).reshape(x.shape[0], -1).sum(-1)
        np.testing.assert_allclose(jax.nn.logsumexp(log_p), 0.0, atol=2e-5)
        assert np.ptp(np.asarray(log_p)) > 1.0


def test_cached_logits_equal_full_forward_logits_at_every_position(nets):
    """Teacher-forced decoding through the cache (the class token at position 0) gives the
    full forward pass's raw at every position."""
    m, params, _, levels, event, label = nets["cond"]
    x = jax.random.randint(jax.random.key(5), (4, *event), 0, levels).astype(jnp.float32)
    full = _apply(m, params)(x, label)
    cached = jax.jit(lambda x: tr.transformer_cached_raw(m, params, x, label))(x)
    assert cached.shape == full.shape == (4, *event, m.num_params)
    np.testing.assert_allclose(cached, full, atol=2e-5, rtol=1e-5)
    assert float(jnp.abs(full).max()) > 0.1


def _draw(likelihood, levels):
    return functools.partial(outputs.draw, likelihood, num_levels=levels)


def _samplers(m, params, likelihood, levels, label):
    draw = _draw(likelihood, levels)
    apply_fn = lambda x: m.apply({"params": params}, x, label)
    cached = jax.jit(lambda k, x0, t: tr.transformer_sample(
        m, params, k, x0, draw=draw, temperature=t, label=label))
    naive = jax.jit(lambda k, x0, t: sampling.naive_sample(
        apply_fn, k, x0, draw=draw, temperature=t))
    return cached, naive


@pytest.mark.parametrize("name", ["levels", "cond"])
def test_cached_sampler_equals_naive_sampler_under_the_same_key(name, nets):
    """Same key, same samples (with a class label for "cond"), at two temperatures; another key
    gives other samples, so the agreement is not that of two constant samplers."""
    m, params, likelihood, levels, event, label = nets[name]
    label = None if label is None else jnp.arange(16) % 3
    cached, naive = _samplers(m, params, likelihood, levels, label)
    x0 = jnp.zeros((16, *event))
    for t in (1.0, 0.5):
        a = np.asarray(cached(jax.random.key(7), x0, t))
        np.testing.assert_array_equal(a, np.asarray(naive(jax.random.key(7), x0, t)))
        assert set(np.unique(a)) <= set(range(levels))
    other = np.asarray(cached(jax.random.key(8), x0, 1.0))
    assert not np.array_equal(other, np.asarray(cached(jax.random.key(7), x0, 1.0)))


def test_jit_and_no_jit_agree(nets):
    """The forward pass, op by op against compiled (the samplers are one lax.scan, compiled
    either way; the tests above run them jitted against the jitted naive sampler)."""
    m, params, *_ = nets["cond"]
    x = jax.random.randint(jax.random.key(2), (1, *EVENT), 0, 2).astype(jnp.float32)
    lab = jnp.array([1])
    jitted = _apply(m, params)(x, lab)
    with jax.disable_jit():
        eager = m.apply({"params": params}, x, lab)
    np.testing.assert_allclose(jitted, eager, atol=1e-5)
    assert float(jnp.abs(eager).max()) > 0.1


def test_bad_input_is_refused_in_one_line(nets):
    m, params, likelihood, levels, event, label = nets["plain"]
    with pytest.raises(ValueError, match="max_len=9"):
        m.apply({"params": params}, jnp.zeros((2, 4, 4, 1)))
    with pytest.raises(ValueError, match="num_classes=0"):
        m.apply({"params": params}, jnp.zeros((2, *event)), jnp.zeros((2,), jnp.int32))
    with pytest.raises(ValueError, match="temperature"):
        tr.transformer_sample(m, params, jax.random.key(0), jnp.zeros((2, *event)),
                              draw=_draw(likelihood, levels), temperature=0.0)
    mc, pc, *_ = nets["cond"]
    with pytest.raises(ValueError, match="pass a label"):
        mc.apply({"params": pc}, jnp.zeros((2, *event)))
    with pytest.raises(ValueError, match="num_heads=3"):
        tr.ARTransformer(num_levels=2, num_params=2, max_len=9, d_model=16, num_heads=3,
                         num_layers=1).init(jax.random.key(0), jnp.zeros((1, *event)))
