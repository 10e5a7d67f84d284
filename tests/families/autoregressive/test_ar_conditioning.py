"""Spatial conditioning (``cond [B, H, W, E]``) and the code-embedding input of the gated
PixelCNN and the transformer (the priors of VQ-VAE / VQ-VAE-2): x stays causal with cond, cond
reaches every position (and, in the gated PixelCNN, both stacks), the cached samplers equal the
naive one with cond and embedded levels, p(x | cond) normalises over every tiny image, and with
the options off nothing changes. Each network compiles one forward program (a batch of D + 1)
that its tests share."""

import functools
import itertools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.families.autoregressive import dense, pixelcnn_cache
from gmzoo.families.autoregressive import transformer as tr
from gmzoo.families.autoregressive.family import ARNets
from gmzoo.families.autoregressive.pixelcnn import GatedPixelCNN

K, E = 3, 2  # levels (categorical, P = K) and cond channels
GATED = dict(features=8, num_layers=2, first_kernel=5, kernel=3, num_levels=K, num_params=K,
             num_classes=2)


def _nets(net, event, cached):
    return ARNets(net, "categorical", K, event, net.num_classes, cached)


@pytest.fixture(scope="module")
def models(numpy_init):
    """name -> (ARNets, params): weights 3x the usual scale, so the conditionals move with their
    context and a cache holding the wrong values changes the samples."""
    specs = {
        "gated": (GatedPixelCNN(cond_channels=E, **GATED), (4, 4, 1),
                  pixelcnn_cache.gated_pixelcnn_sample),
        "gated_embed": (GatedPixelCNN(cond_channels=E, input_embedding=4, **GATED), (4, 4, 1),
                        pixelcnn_cache.gated_pixelcnn_sample),
        "transformer": (tr.ARTransformer(num_levels=K, num_params=K, max_len=9, d_model=16,
                                         num_heads=2, num_layers=1, mlp_ratio=2,
                                         cond_channels=E), (3, 3, 1), tr.transformer_sample),
    }
    out = {}
    for i, (name, (net, event, cached)) in enumerate(specs.items()):
        label = jnp.zeros((1,), jnp.int32) if net.num_classes else None
        x, cond = jnp.zeros((1, *event)), jnp.zeros((1, *event[:-1], E))
        with_cond = types.SimpleNamespace(init=functools.partial(net.init, cond=cond))
        out[name] = (_nets(net, event, cached),
                     numpy_init(with_cond, x, label, scale=3.0, seed=i)["params"])
    return out


def _batch(nets, seed):
    """``x [D + 1, *event]`` random levels (row j + 1: x_j moved by one level), ``label`` or
    None, ``cond [D + 1, H, W, E]`` (one map, repeated): the shapes of the shared program."""
    event = nets.event_shape
    d = int(np.prod(event))
    flat = jax.random.randint(jax.random.key(seed), (1, d), 0, K)
    flat = jnp.concatenate([flat, (flat + jnp.eye(d, dtype=flat.dtype)) % K])  # [D + 1, D]
    label = jnp.ones((d + 1,), jnp.int32) if nets.num_classes else None
    return flat.reshape(d + 1, *event).astype(jnp.float32), label, _cond(event, seed, d + 1)


def _cond(event, seed, batch):
    one = jax.random.normal(jax.random.key(seed + 100), (1, *event[:-1], E))
    return jnp.broadcast_to(one, (batch, *event[:-1], E))


@functools.cache
def _forward(nets):
    """``raw = net(x, label, cond=cond)``, one jitted function per network."""
    return jax.jit(nets.apply_fn)


def test_jacobian_in_x_is_strictly_lower_triangular_with_cond(models):
    """d raw_d / d x_j = 0 for j >= d (raster order) with a cond map in: cond's path never
    touches x. Not a constant network: every output after the first sees the dimension just
    before it."""
    nets, params = models["gated"]
    shape, d = (1, 4, 4, 1), 16
    cond, label = _cond(shape[1:], 1, 1), jnp.ones((1,), jnp.int32)
    f = lambda flat: nets.apply_fn(params, flat.reshape(shape), label, cond).reshape(d, -1)
    xs = np.random.default_rng(1).integers(0, K, (3, d)).astype(np.float32)
    jac = jax.jit(jax.vmap(jax.jacfwd(f)))(jnp.asarray(xs))  # [3, D, P, D]
    dep = np.asarray(jnp.any(jac != 0, axis=(0, 2)))  # [D_out, D_in]
    assert not np.triu(dep).any(), np.argwhere(np.triu(dep))
    assert np.diagonal(dep, -1).all()


@pytest.mark.parametrize("name", ["gated_embed", "transformer"])
def test_raw_depends_only_on_earlier_levels_with_cond(name, models):
    """Embedded levels have no derivative in x, so the Jacobian is read off by moving one
    level: moving x_j leaves raw_i unchanged for every i <= j (to rounding: the examples sit
    at different batch positions) and moves raw_{j+1}."""
    nets, params = models[name]
    x, label, cond = _batch(nets, 2)
    d = x.shape[0] - 1
    raw = np.asarray(_forward(nets)(params, x, label, cond)).reshape(d + 1, d, -1)
    base = raw[0]  # [D, P]
    for j in range(d):
        moved = raw[j + 1]
        np.testing.assert_allclose(moved[:j + 1], base[:j + 1], atol=1e-5,
                                   err_msg=f"x_{j} leaked")
        if j + 1 < d:
            assert np.abs(moved[j + 1] - base[j + 1]).max() > 1e-3, j


@pytest.mark.parametrize("name", ["gated", "gated_embed", "transformer"])
def test_changing_cond_changes_the_outputs_at_every_position(name, models):
    nets, params = models[name]
    x, label, cond = _batch(nets, 3)
    a = np.asarray(_forward(nets)(params, x, label, cond))
    b = np.asarray(_forward(nets)(params, x, label, _cond(nets.event_shape, 4, x.shape[0])))
    diff = np.abs(a - b).reshape(x.shape[0], -1, K).max(-1)  # [D + 1, D]
    assert np.all(diff > 1e-4), diff


def test_cond_enters_both_stacks_of_the_gated_pixelcnn(models):
    """As the paper's eq. 5 (V_f * s and V_g * s in the gated layers of both stacks): raw at row
    0 moves with cond on its own pixel (row 0 gets nothing from the vertical stack: the
    horizontal one), and raw at (1, 0) with cond at (0, 1), a pixel only the vertical stack
    reaches (the horizontal stack reads its own row, at and left of the pixel: raw at (0, 0)
    does not see it)."""
    nets, params = models["gated"]
    x, label = jnp.ones((1, 4, 4, 1)), jnp.ones((1,), jnp.int32)
    f = lambda c: nets.apply_fn(params, x, label, c)[0, ..., 0, :]  # [H, W, P]
    jac = jax.jit(jax.jacfwd(f))(_cond((4, 4, 1), 5, 1))  # [H, W, P, 1, H, W, E]
    seen = np.asarray(jnp.any(jac != 0, axis=(2, 3, 6)))  # [H, W (out), H, W (cond)]
    assert all(seen[0, j, 0, j] for j in range(4))  # horizontal stack
    assert seen[1, 0, 0, 1] and not seen[0, 0, 0, 1]  # vertical stack, through the link


@pytest.mark.parametrize("name", ["gated_embed", "transformer"])
def test_cached_sampler_equals_naive_sampler_with_cond(name, models):
    """:meth:`ARNets.sample`, cached and naive, under the same key with the same cond (and
    embedded levels for the gated PixelCNN): the same samples; another cond, other samples."""
    nets, params = models[name]
    batch, event = 4, nets.event_shape
    label = jnp.arange(batch) % 2 if nets.num_classes else None
    x0 = jnp.zeros((batch, *event))

    @jax.jit
    def both(key, cond):
        return tuple(nets.sample(params, key, x0, temperature=0.8, label=label, cond=cond,
                                 cached=c) for c in (True, False))

    fast, slow = both(jax.random.key(7), jax.random.normal(jax.random.key(8),
                                                           (batch, *event[:-1], E)))
    np.testing.assert_array_equal(fast, slow)
    assert set(np.unique(fast)) <= set(range(K)) and len(np.unique(fast)) > 1
    other, _ = both(jax.random.key(7), _cond(event, 9, batch))
    assert not np.array_equal(other, fast)


@pytest.mark.parametrize("name,event", [("gated_embed", (2, 2, 1)), ("transformer", (3, 3, 1))])
def test_probabilities_given_cond_sum_to_one(name, event, models):
    """sum_x p(x | label, cond) = 1 over all K^D images (3^4 = 81 for the gated PixelCNN with
    embedded levels, 3^9 for the transformer), through :meth:`ARNets.log_prob`; the
    distribution is not uniform."""
    nets, params = models[name]
    d = int(np.prod(event))
    nets = _nets(nets.net, event, nets.cached)  # the gated PixelCNN: any image size
    x = jnp.asarray(list(itertools.product(range(K), repeat=d)), jnp.float32)
    x = x.reshape(-1, *event)  # [K^D, *event]
    n = x.shape[0]
    label = jnp.ones((n,), jnp.int32) if nets.num_classes else None
    log_p = jax.jit(nets.log_prob)(params, x, label, _cond(event, 10, n))  # [K^D]
    np.testing.assert_allclose(jax.nn.logsumexp(log_p), 0.0, atol=1e-4)
    assert np.ptp(np.asarray(log_p)) > 1.0


def _names(tree):
    return {jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.mark.parametrize("name", ["gated", "transformer"])
def test_options_off_add_nothing_and_zero_cond_is_no_cond(name, models):
    """With ``cond_channels=0`` (and ``input_embedding=0``) the parameters are those the module
    had without the options (the conditioned module's, minus the cond projections), and its
    raw equals, bit for bit, the conditioned module's at cond = 0 on the shared parameters: the
    off path computes what it did, and cond only adds V * cond."""
    nets, params = models[name]
    off = nets.net.clone(cond_channels=0)
    x, label, cond = _batch(nets, 11)
    off_params = jax.eval_shape(off.init, jax.random.key(0), x, label)["params"]
    assert _names(off_params) == {n for n in _names(params) if "cond_proj" not in n}
    shared = {k: v for k, v in params.items() if not k.startswith("cond_proj")}
    raw_off = jax.jit(_nets(off, nets.event_shape, None).apply_fn)(shared, x, label)
    raw_zero = _forward(nets)(params, x, label, jnp.zeros_like(cond))
    np.testing.assert_array_equal(raw_off, raw_zero)


def test_refusals_are_one_line(models):
    nets, params = models["gated"]
    x, label = jnp.zeros((1, 4, 4, 1)), jnp.ones((1,), jnp.int32)
    with pytest.raises(ValueError, match=r"cond_channels=2\): pass cond \[B, H, W, 2\]"):
        nets.apply_fn(params, x, label)
    with pytest.raises(ValueError, match=r"x's H, W = \(4, 4\)"):
        nets.apply_fn(params, x, label, jnp.zeros((1, 2, 2, E)))
    init = lambda net, *args, **kw: jax.eval_shape(net.init, jax.random.key(0), *args, **kw)
    with pytest.raises(ValueError, match="only for one-channel images"):
        init(GatedPixelCNN(num_channels=3, input_embedding=4, **GATED), jnp.zeros((1, 4, 4, 3)),
             label)
    with pytest.raises(ValueError, match="cond_channels=0"):
        init(GatedPixelCNN(**GATED), x, label, cond=jnp.zeros((1, 4, 4, E)))
    t_nets, t_params = models["transformer"]
    with pytest.raises(ValueError, match=r"ARTransformer takes cond \[B, \*event\[:-1\], 2\]"):
        t_nets.apply_fn(t_params, jnp.zeros((1, 3, 3, 1)), None, jnp.zeros((1, 9, E)))
    with pytest.raises(ValueError, match="FVSBN takes no spatial cond"):
        _nets(dense.FVSBN(num_params=K, num_levels=K), (3, 3, 1), None).apply_fn(
            {}, jnp.zeros((1, 3, 3, 1)), None, jnp.zeros((1, 3, 3, E)))
