"""Flow bijectors: inverse(forward(x)) = x with cancelling log-dets, and every log-det equal to
slogdet of the Jacobian in float64 (a 1x1 convolution with det W < 0 among them), on random
non-identity params; couplings are the identity at their real init; squeeze is the documented
permutation; ActNorm's data-dependent init under jit and over a named axis; dequantization,
the logit transform and bits/dim on an exact number."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.config import DataConfig
from gmzoo.data import transforms
from gmzoo.data.preprocess import make_data_space
from gmzoo.families.flows import bijectors as bj

EVENT = (4, 4, 2)  # D = 32
PIXELS3 = (1, 3, 3)  # 3 pixels, 3 channels: det of the Jacobian = det(W)^3 keeps det W's sign


def _seed_with_det_sign(sign: float) -> int:
    """The first seed whose 3x3 LU init has det W = det(P) prod(sign_s) of the given sign."""
    for seed in range(100):
        p, _, _, sign_s, _ = bj.lu_init(3, seed)
        if np.linalg.det(p) * np.prod(sign_s) * sign > 0:
            return seed
    raise AssertionError("no seed found")


# name -> (module, event shape, cond channels or 0, input: "normal" or "unit")
CASES = {
    "coupling_checkerboard_0": (bj.AffineCoupling("checkerboard", 0, hidden=8), EVENT, 0, "normal"),
    "coupling_checkerboard_1_cond": (bj.AffineCoupling("checkerboard", 1, hidden=8), EVENT, 1,
                                     "normal"),
    "coupling_channel_0": (bj.AffineCoupling("channel", 0, hidden=8), EVENT, 0, "normal"),
    "coupling_channel_1": (bj.AffineCoupling("channel", 1, hidden=8), EVENT, 0, "normal"),
    "actnorm": (bj.ActNorm(), EVENT, 0, "normal"),
    "conv1x1_det_positive": (bj.Invertible1x1Conv(_seed_with_det_sign(1.0)), PIXELS3, 0,
                             "normal"),
    "conv1x1_det_negative": (bj.Invertible1x1Conv(_seed_with_det_sign(-1.0)), PIXELS3, 0,
                             "normal"),
    "squeeze": (bj.Squeeze(), EVENT, 0, "normal"),
    "logit": (bj.LogitTransform(0.05), EVENT, 0, "unit"),
    "chain": (bj.Chain([bj.ActNorm(), bj.Invertible1x1Conv(seed=3),
                        bj.AffineCoupling("checkerboard", 0, hidden=4), bj.Squeeze(),
                        bj.AffineCoupling("channel", 1, hidden=4)]), EVENT, 0, "normal"),
}


def _inputs(name, batch, dtype=np.float32):
    _, event, cond_channels, kind = CASES[name]
    rng = np.random.default_rng(7)
    x = rng.uniform(0.01, 0.99, (batch, *event)) if kind == "unit" else rng.normal(
        size=(batch, *event))
    cond = rng.normal(size=(batch, *event[:2], cond_channels)) if cond_channels else None
    return x.astype(dtype), None if cond is None else cond.astype(dtype)


@pytest.fixture(scope="module")
def variables(numpy_init):
    """name -> random (numpy-drawn, not the identity init) variables of each case."""
    out = {}
    for k, (name, (m, _, _, _)) in enumerate(CASES.items()):
        x, cond = _inputs(name, 2)
        v = numpy_init(m, jnp.asarray(x), cond, scale=2.0, seed=k)

        def widen(path, a):  # scale_factor ~ N(1, 0.6^2), so the log-scales are not tiny
            if path[-1].key == "scale_factor":
                return a * 3.0 + 1.0
            return a
        out[name] = jax.tree_util.tree_map_with_path(widen, v)
    return out


@pytest.mark.parametrize("name", CASES)
def test_inverse_of_forward_is_the_identity_and_the_log_dets_cancel(variables, name):
    """On random params (the forward moves x by more than 0.05), x -> y -> x to 1e-5 and
    log_det_forward(x) + log_det_inverse(y) = 0, per example."""
    m = CASES[name][0]

    @jax.jit
    def there_and_back(v, x, c):
        y, ld_f = m.apply(v, x, c, method=m.forward_and_log_det)
        return y, ld_f, *m.apply(v, y, c, method=m.inverse_and_log_det)

    x, cond = _inputs(name, 2)
    y, ld_f, x_back, ld_i = there_and_back(variables[name], x, cond)
    assert y.shape != x.shape or np.abs(np.asarray(y) - x).max() > 0.05
    assert ld_f.shape == ld_i.shape == (2,)
    np.testing.assert_allclose(x_back, x, atol=1e-5, rtol=0)
    np.testing.assert_allclose(ld_f + ld_i, 0.0, atol=1e-5)


@pytest.mark.parametrize("name", CASES)
def test_log_det_is_slogdet_of_the_jacobian_in_float64(variables, name):
    """log_det of the forward = log|det J| of jacfwd of the flattened map (one example,
    float64); for the 1x1 convolutions on 3 pixels the sign of det J is det W's."""
    m = CASES[name][0]
    with jax.enable_x64(True):
        v = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), variables[name])
        x, cond = _inputs(name, 1, np.float64)
        shape = x.shape

        def f(flat):
            y, log_det = m.apply(v, flat.reshape(shape), cond, method=m.forward_and_log_det)
            return y.ravel(), log_det

        jac, log_det = jax.jit(jax.jacfwd(f, has_aux=True))(jnp.asarray(x.ravel()))
        assert jac.dtype == log_det.dtype == jnp.float64
        jac = np.asarray(jac)
        sign, log_abs = np.linalg.slogdet(jac)
        np.testing.assert_allclose(log_det[0], log_abs, atol=1e-8, rtol=1e-10)
        if name.startswith("conv1x1"):
            p, l_mat, u_mat, _ = m.apply(v, 3, method=m.factors)
            det_w = np.linalg.det(np.asarray(p @ l_mat @ u_mat))
            assert sign == np.sign(det_w) == (-1.0 if name.endswith("negative") else 1.0)


def test_couplings_are_the_identity_at_their_real_init():
    """Real init (zero last layer, the other layers random): y = x exactly and log_det = 0,
    both ways, for both masks and with a conditioning tensor."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, *EVENT)), jnp.float32)
    cond = jnp.ones((2, 4, 4, 1))
    for m, c in [(bj.AffineCoupling("checkerboard", 0, hidden=4), cond),
                 (bj.AffineCoupling("channel", 1, hidden=4), None)]:

        def init_and_run(x, c):
            v = m.init(jax.random.key(0), x, c)
            return v, [m.apply(v, x, c, method=method)
                       for method in (m.forward_and_log_det, m.inverse_and_log_det)]

        v, outs = jax.jit(init_and_run)(x, c)
        assert np.all(np.asarray(v["params"]["out"]["kernel"]) == 0)
        assert np.abs(np.asarray(v["params"]["conv_0"]["kernel"])).max() > 0
        for y, log_det in outs:
            np.testing.assert_array_equal(y, x)
            np.testing.assert_array_equal(log_det, np.zeros(2))


def test_coupling_log_scale_is_bounded_by_its_scale_factor(variables):
    """A last layer blown up 1e4 times still gives |s| <= |scale_factor| per channel, and a
    finite forward (s = scale_factor * tanh(raw_s))."""
    m = bj.AffineCoupling("checkerboard", 0, hidden=8)
    params = variables["coupling_checkerboard_0"]["params"]
    params = {**params, "out": jax.tree.map(lambda a: a * 1e4, params["out"])}
    x, _ = _inputs("coupling_checkerboard_0", 2)
    s, _ = m.apply({"params": params}, x, None, method=m.shift_and_log_scale)
    bound = np.abs(np.asarray(params["scale_factor"]))
    assert np.abs(np.asarray(s)).max() > 0.5 * bound.max()
    assert np.all(np.abs(np.asarray(s)) <= bound + 1e-6)
    y, log_det = m.apply({"params": params}, x)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(log_det))


def test_coupling_masks_pass_half_of_the_dims_through():
    b = bj.coupling_mask((2, 2, 4), "checkerboard", 0)[0]
    np.testing.assert_array_equal(b[:, :, 0], [[1, 0], [0, 1]])
    np.testing.assert_array_equal(bj.coupling_mask((2, 2, 4), "checkerboard", 1), 1 - b[None])
    c = bj.coupling_mask((2, 2, 4), "channel", 0)[0, 0, 0]
    np.testing.assert_array_equal(c, [1, 1, 0, 0])
    np.testing.assert_array_equal(bj.coupling_mask((2, 2, 4), "channel", 1)[0, 0, 0], 1 - c)


def test_squeeze_is_the_documented_permutation_and_unsqueeze_undoes_it():
    x = np.arange(2 * 4 * 6 * 3, dtype=np.float32).reshape(2, 4, 6, 3)
    y = np.asarray(bj.squeeze(jnp.asarray(x)))
    assert y.shape == (2, 2, 3, 12)
    for b, i, j, di, dj, c in np.ndindex(2, 2, 3, 2, 2, 3):
        assert y[b, i, j, (2 * di + dj) * 3 + c] == x[b, 2 * i + di, 2 * j + dj, c]
    np.testing.assert_array_equal(bj.unsqueeze(jnp.asarray(y)), x)
    np.testing.assert_array_equal(bj.squeeze(bj.unsqueeze(jnp.asarray(y))), y)
    _, log_det = bj.Squeeze().apply({}, jnp.asarray(x))
    np.testing.assert_array_equal(log_det, np.zeros(2))
    with pytest.raises(ValueError, match="even H and W, got H=3, W=4"):
        bj.squeeze(jnp.zeros((1, 3, 4, 1)))
    with pytest.raises(ValueError, match="divisible by 4, got C=6"):
        bj.unsqueeze(jnp.zeros((1, 2, 2, 6)))


def _channel_stats(a):
    a = np.asarray(a, np.float64)
    return a.mean(axis=(0, 1, 2)), a.std(axis=(0, 1, 2))


def test_actnorm_init_normalises_the_init_batch_under_jit():
    """jit(init) on a batch gives per-channel mean 0 and std 1 on that batch; the same
    compiled init on another batch fits that batch (no statistic frozen at trace time)."""
    m = bj.ActNorm()
    init = jax.jit(m.init)
    apply = jax.jit(m.apply)
    rng = np.random.default_rng(1)
    for shift, scale in [(np.array([5.0, -2.0, 0.5]), np.array([3.0, 0.2, 1.0])),
                         (np.array([-1.0, 0.0, 7.0]), np.array([0.5, 4.0, 2.0]))]:
        x = jnp.asarray(rng.normal(size=(4, 3, 3, 3)) * scale + shift, jnp.float32)
        v = init(jax.random.key(0), x)
        y, log_det = apply(v, x)
        mean, std = _channel_stats(y)
        np.testing.assert_allclose(mean, 0.0, atol=1e-5)
        np.testing.assert_allclose(std, 1.0, atol=1e-5)
        np.testing.assert_allclose(log_det, -9 * np.log(_channel_stats(x)[1]).sum(), rtol=1e-5)


def test_actnorm_init_over_a_named_axis_uses_the_global_batch():
    """Two 'devices' (vmap with axis_name) holding different data: with axis_name both get
    the statistics of the concatenated batch; without it, each its own."""
    rng = np.random.default_rng(2)
    local = np.stack([rng.normal(size=(3, 2, 2, 2)),
                      rng.normal(size=(3, 2, 2, 2)) * 3.0 + 5.0])  # [devices, B, H, W, C]
    global_batch = local.reshape(6, 2, 2, 2)
    xs = jnp.asarray(local, jnp.float32)
    for m, stats in [(bj.ActNorm(), [_channel_stats(local[0]), _channel_stats(local[1])]),
                     (bj.ActNorm(axis_name="data"), [_channel_stats(global_batch)] * 2)]:
        v = jax.jit(jax.vmap(lambda x: m.init(jax.random.key(0), x), axis_name="data"))(xs)
        for d, (mean, std) in enumerate(stats):
            np.testing.assert_allclose(v["params"]["bias"][d], -mean, atol=1e-5)
            np.testing.assert_allclose(v["params"]["log_scale"][d], -np.log(std), atol=1e-5)
    # applied outside the map (no axis needed after init): the global batch is normalised
    y, _ = m.apply(jax.tree.map(lambda a: a[1], v), jnp.asarray(global_batch, jnp.float32))
    mean, std = _channel_stats(y)
    np.testing.assert_allclose(mean, 0.0, atol=1e-5)
    np.testing.assert_allclose(std, 1.0, atol=1e-5)


def test_dequantize_logit_and_bits_per_dim_give_the_exact_uniform_number():
    """Dequantized 8-bit data (the spine's data space, data.dequantize=true) under 'logit
    transform + standard logistic base' has density (1 - 2 alpha)^D exactly (sigmoid of a
    logistic is uniform), so the evaluator's bits/dim, (NLL / D + log L) / log 2, is
    8 - log2(1 - 2 alpha) for every example: only if the logit's log-det is counted."""
    alpha, levels = 0.05, 256
    space = make_data_space(DataConfig(name="mnist5k", dequantize=True), levels)
    x_int = np.random.default_rng(3).integers(0, levels, (3, 2, 2, 3))

    @jax.jit
    def bpd_of(x_int):
        xq = space.prepare({"image": jnp.asarray(x_int, jnp.float32)}, jax.random.key(1))["image"]
        z, log_det = bj.logit_transform(xq, alpha)
        log_pz = (jax.nn.log_sigmoid(z) + jax.nn.log_sigmoid(-z)).reshape(3, -1).sum(-1)
        nll = -(log_pz + log_det) + 12 * space.dequantization_nats_per_dim
        return xq, transforms.bits_per_dim(nll, 12)

    xq, bpd = bpd_of(x_int)
    np.testing.assert_array_equal(np.floor(np.asarray(xq) * levels), x_int)
    assert np.asarray(xq).min() >= 0.0 and np.asarray(xq).max() < 1.0
    np.testing.assert_allclose(bpd, 8.0 - np.log2(1.0 - 2.0 * alpha), atol=1e-5)


def test_bad_settings_are_refused_in_one_line():
    x = jnp.zeros((1, 4, 4, 2))
    key = jax.random.key(0)
    for m, x_in, cond, match in [
            (bj.AffineCoupling("stripes"), x, None, "mask='stripes'; choose one of"),
            (bj.AffineCoupling(parity=2), x, None, "parity=2; choose 0 or 1"),
            (bj.AffineCoupling("channel"), jnp.zeros((1, 4, 4, 1)), None, "C >= 2 channels"),
            (bj.AffineCoupling(kernel=2), x, None, "odd kernel"),
            (bj.AffineCoupling(), x, jnp.zeros((1, 2, 2, 1)), "cond must be"),
            (bj.ActNorm(), jnp.zeros((4, 2)), None, "images \\[B, H, W, C\\]")]:
        with pytest.raises(ValueError, match=match) as e:
            jax.eval_shape(m.init, key, x_in, cond)
        assert len(str(e.value).splitlines()) == 1
    with pytest.raises(ValueError, match="alpha must be in \\[0, 0.5\\), got 0.5"):
        bj.logit_transform(jnp.zeros((1, 2)), 0.5)
