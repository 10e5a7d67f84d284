"""Multi-scale flows (Real NVP, Glow): decode(encode(x)) = x through every scale, with and
without a conditioning image; log_prob equals a float64 change of variables (slogdet of the
Jacobian of x -> all latents, plus the latents' Gaussian log-densities, Glow's split prior
recomputed from the kept half); sampling's temperature scales every Gaussian's std, jitted
and not; at the real init every coupling is the identity and ActNorm was fitted to the init
batch; the conditioning reaches every coupling at its own resolution; bad inputs are refused
in one line. Random non-identity params are drawn in numpy (conftest's ``numpy_init``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gmzoo.families.flows import bijectors as bj
from gmzoo.families.flows import models

# the flows under test (Real NVP without its optional ActNorm: the composition is the same
# Chain, and an ActNorm'd Real NVP would cost a compile per test; its layout is checked below)
MODELS = {"realnvp": models.RealNVPTiny(), "glow": models.GlowTiny()}
X_SHAPE = (2, 8, 8, 1)
COND_SHAPE = (2, 4, 4, 2)  # a low-resolution image: upsampled to 8x8, as is at 4x4, down to 2x2
TINY_SHAPE, TINY_COND_SHAPE = (1, 4, 4, 1), (1, 2, 2, 2)  # D = 16 for the float64 Jacobian
CASES = [(name, with_cond) for name in MODELS for with_cond in (False, True)]
_JITTED = {}  # one compiled program per (model, what) for the whole module


def _data(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


@pytest.fixture(scope="module")
def variables(numpy_init):
    """(name, with_cond) -> random variables: couplings, ActNorms, 1x1 convs and Glow's priors
    all away from the identity."""
    out = {}
    for k, (name, with_cond) in enumerate(CASES):
        m = MODELS[name]
        v = numpy_init(m, _data(X_SHAPE, 0), _data(COND_SHAPE, 1) if with_cond else None,
                       scale=0.7, seed=k)

        def widen(path, a):  # scale_factor ~ N(1, 0.4^2): log-scales of order 1
            return a * 2.0 + 1.0 if path[-1].key == "scale_factor" else a
        out[name, with_cond] = jax.tree_util.tree_map_with_path(widen, v)
    return out


def _roundtrip(name):
    """jit of x, cond -> (latents, decode(latents), log_prob, standardized latents eps)."""
    if (name, "roundtrip") not in _JITTED:
        m = MODELS[name]

        @jax.jit
        def run(v, x, c):
            zs = m.apply(v, x, c, method=m.encode)
            eps = m.apply(v, x, c, True, method=m.encode)
            return zs, m.apply(v, zs, c, method=m.decode), m.apply(v, x, c), eps
        _JITTED[name, "roundtrip"] = run
    return _JITTED[name, "roundtrip"]


@pytest.mark.parametrize("name,with_cond", CASES)
def test_decode_inverts_encode_through_every_scale(variables, name, with_cond):
    """x -> latents -> x to 1e-4 on random params under which the latents are not a
    permutation of x; the latents have latent_shapes. (decode of the standardized latents is
    checked through sample below.)"""
    m = MODELS[name]
    x = _data(X_SHAPE, 2)
    c = _data(COND_SHAPE, 3) if with_cond else None
    zs, x_back, log_p, _ = _roundtrip(name)(variables[name, with_cond], x, c)
    assert [z.shape for z in zs] == m.latent_shapes(X_SHAPE)
    flat = np.concatenate([np.asarray(z).reshape(2, -1) for z in zs], 1)
    assert np.abs(np.sort(flat, 1) - np.sort(np.asarray(x).reshape(2, -1), 1)).max() > 0.1
    np.testing.assert_allclose(x_back, x, atol=1e-4, rtol=0)
    assert log_p.shape == (2,) and np.all(np.isfinite(log_p))


@pytest.mark.parametrize("name", MODELS)
def test_the_conditioning_reaches_every_coupling(variables, name):
    """Every coupling's net takes cond's channels (its first conv has C + Cc inputs), and
    changing cond changes log_prob and the latents, while decode(encode) still inverts."""
    v = variables[name, True]
    couplings = []

    def collect(tree):
        if "conv_0" in tree and "out" in tree:
            couplings.append(tree)
        else:
            for sub in tree.values():
                if isinstance(sub, dict):
                    collect(sub)
    collect(v["params"])
    assert len(couplings) == {"realnvp": 10, "glow": 4}[name]
    for t in couplings:
        c_x = t["out"]["kernel"].shape[-1] // 2
        assert t["conv_0"]["kernel"].shape[2] == c_x + COND_SHAPE[-1]
    x = _data(X_SHAPE, 2)
    zs_a, _, lp_a, _ = _roundtrip(name)(v, x, _data(COND_SHAPE, 3))
    zs_b, x_back, lp_b, _ = _roundtrip(name)(v, x, _data(COND_SHAPE, 4))
    assert np.all(np.abs(np.asarray(lp_a) - np.asarray(lp_b)) > 1e-3)
    for za, zb in zip(zs_a, zs_b):  # every scale's latent moves
        assert np.abs(np.asarray(za) - np.asarray(zb)).max() > 1e-3
    np.testing.assert_allclose(x_back, x, atol=1e-4, rtol=0)


def _latents_and_priors(m, x, cond):
    """The forward written out scale by scale (a Linen method function), each coupling chain
    given ``cond_at`` its own resolution: [(latent, its prior's mean, log-std)], Glow's split
    prior from the kept half."""
    out = []
    if isinstance(m, models.RealNVP):
        for s in range(m.num_scales):
            x, _ = m.checkerboard[s].forward_and_log_det(x, models.cond_at(cond, *x.shape[1:3]))
            if s < m.num_scales - 1:
                x = bj.squeeze(x)
                x, _ = m.channel[s].forward_and_log_det(x, models.cond_at(cond, *x.shape[1:3]))
                half = x.shape[-1] // 2
                x, z = x[..., :half], x[..., half:]
                out.append((z, jnp.zeros_like(z), jnp.zeros_like(z)))
        return out + [(x, jnp.zeros_like(x), jnp.zeros_like(x))]
    for level in range(m.num_levels):
        x = bj.squeeze(x)
        x, _ = m.levels[level].forward_and_log_det(x, models.cond_at(cond, *x.shape[1:3]))
        if level < m.num_levels - 1:
            half = x.shape[-1] // 2
            x, z = x[..., :half], x[..., half:]
            out.append((z, *m.split_priors[level](x)))
        else:
            out.append((x, *m.top_prior(x)))
    return out


@pytest.mark.parametrize("name", MODELS)
def test_log_prob_is_the_change_of_variables_in_float64(variables, name):
    """On [1, 4, 4, 1] with a [1, 2, 2, 2] cond: log_prob = log|det d(latents)/dx| (slogdet of
    jacfwd of the flattened map) + the latents' log-densities (Real NVP: standard normal; Glow:
    its split prior's mean and std from the kept half, the top prior's), in float64. The
    latents equal the forward written out with each scale's chain given cond at its own
    resolution (4x4 upsampled, 2x2 as is, 1x1 shrunk)."""
    m = MODELS[name]
    rng = np.random.default_rng(5)
    with jax.enable_x64(True):
        v = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64),
                         variables[name, True])
        x = rng.normal(size=TINY_SHAPE)
        c = jnp.asarray(rng.normal(size=TINY_COND_SHAPE))

        def latents(flat):
            zs = m.apply(v, flat.reshape(TINY_SHAPE), c, method=m.encode)
            return jnp.concatenate([z.ravel() for z in zs]), zs

        @jax.jit
        def run(flat):
            jac, zs = jax.jacfwd(latents, has_aux=True)(flat)
            priors = m.apply(v, flat.reshape(TINY_SHAPE), c, method=_latents_and_priors)
            return jac, zs, priors, m.apply(v, flat.reshape(TINY_SHAPE), c)

        jac, zs, priors, log_p = run(jnp.asarray(x.ravel()))
        assert log_p.dtype == jnp.float64 and np.asarray(jac).shape == (16, 16)
        _, log_abs_det = np.linalg.slogdet(np.asarray(jac))
        assert len(priors) == len(zs)
        base = 0.0
        for z, (z_manual, mean, log_std) in zip(zs, priors):
            np.testing.assert_allclose(z, z_manual, rtol=0, atol=1e-12)
            if name == "glow":
                assert np.abs(np.asarray(mean)).max() > 1e-2  # a prior away from N(0, 1)
            base += stats.norm.logpdf(np.asarray(z), np.asarray(mean),
                                      np.exp(np.asarray(log_std))).sum()
        np.testing.assert_allclose(log_p[0], base + log_abs_det, rtol=1e-10, atol=1e-8)


@pytest.mark.parametrize("name", MODELS)
def test_sample_temperature_scales_every_std_jitted_and_not(variables, name):
    """One compiled sample for every key and temperature (traced once); the eager call agrees
    (checked on Glow only: an eager flow costs ~3 s of per-op compiles, and the sample method
    is the models' shared one);
    encode(sample(T), standardized) = T * encode(sample(1), standardized) for the same key (the
    temperature scales the std of every Gaussian, Glow's learned priors included), so T = 0
    decodes the prior means (eps = 0) and T = 1e-3 lands next to it."""
    m = MODELS[name]
    v = variables[name, False]
    traces = []

    @jax.jit
    def sample(v, key, temperature):
        traces.append(1)
        return m.apply(v, key, X_SHAPE, temperature, method=m.sample)

    key = jax.random.key(11)
    samples = {t: sample(v, key, t) for t in (1.0, 0.5, 1e-3, 0.0)}
    assert len(traces) == 1
    for s in samples.values():
        assert s.shape == X_SHAPE and np.all(np.isfinite(s))
    if name == "glow":
        eager = m.apply(v, key, X_SHAPE, 0.5, method=m.sample)
        np.testing.assert_allclose(eager, samples[0.5], atol=1e-5, rtol=0)
    eps = {t: _roundtrip(name)(v, s, None)[3] for t, s in samples.items()}
    for e1, e_half, e0 in zip(eps[1.0], eps[0.5], eps[0.0]):
        assert np.asarray(e1).std() > 0.5
        np.testing.assert_allclose(e_half, 0.5 * np.asarray(e1), atol=1e-4, rtol=0)
        np.testing.assert_allclose(e0, 0.0, atol=1e-4)
    gap = np.abs(np.asarray(samples[1e-3]) - np.asarray(samples[0.0])).max()
    assert 0 < gap < 0.05
    assert np.abs(np.asarray(samples[1.0]) - np.asarray(samples[0.0])).max() > 0.5


@pytest.mark.parametrize("name", MODELS)
def test_at_the_real_init_every_coupling_is_the_identity(name):
    """``init`` on a [2, 4, 4, 3] batch (through log_prob) then the same forward: every
    coupling's last layer is zero. Real NVP without ActNorm: the latents are a permutation of
    x and log_prob is x's standard normal log-density. Glow: the first ActNorm was fitted to
    the squeezed batch (mean 0, std 1), and log_prob = the latents' standard normal density
    (zero priors) + H W (sum log_scale) of each ActNorm + H W (sum log_s) of each 1x1 conv."""
    m = MODELS[name]  # Real NVP without ActNorm (the default)
    shape = (2, 4, 4, 3)
    x = _data(shape, 6)

    @jax.jit
    def init_and_encode(x):
        v = m.init(jax.random.key(0), x)
        return v, m.apply(v, x), m.apply(v, x, method=m.encode)

    v, log_p, zs = init_and_encode(x)
    outs = []
    jax.tree_util.tree_map_with_path(
        lambda p, a: outs.append(np.asarray(a)) if p[-2].key == "out" else None, v["params"])
    assert len(outs) == 2 * {"realnvp": 10, "glow": 4}[name]
    assert all(np.all(a == 0) for a in outs)
    flat = np.concatenate([np.asarray(z).reshape(2, -1) for z in zs], 1)
    base = stats.norm.logpdf(flat).sum(1)
    assert np.all(np.isfinite(log_p))
    if name == "realnvp":
        np.testing.assert_array_equal(np.sort(flat, 1), np.sort(np.asarray(x).reshape(2, -1), 1))
        np.testing.assert_allclose(log_p, base, rtol=1e-5)
        return
    squeezed = np.asarray(bj.squeeze(x), np.float64)
    first = v["params"]["levels_0"]["layers_0"]
    np.testing.assert_allclose(first["bias"], -squeezed.mean((0, 1, 2)), atol=1e-5)
    np.testing.assert_allclose(first["log_scale"], -np.log(squeezed.std((0, 1, 2))), atol=1e-5)
    log_det = 0.0
    for level in range(m.num_levels):
        pixels = (shape[1] // 2 ** (level + 1)) ** 2
        for layer in v["params"][f"levels_{level}"].values():
            for key in ("log_scale", "log_s"):
                log_det += pixels * np.asarray(layer.get(key, 0.0)).sum()
    np.testing.assert_allclose(log_p, base + log_det, rtol=1e-5)


def test_realnvp_with_actnorm_puts_one_before_every_coupling():
    v = jax.eval_shape(models.RealNVPTiny(actnorm=True).init, jax.random.key(0),
                       jnp.zeros(X_SHAPE))
    chains = [v["params"][k] for k in ("checkerboard_0", "channel_0", "checkerboard_1")]
    assert [len(c) for c in chains] == [6, 6, 8]
    for chain in chains:
        for k, layer in enumerate(chain[f"layers_{i}"] for i in range(len(chain))):
            assert set(layer) == ({"bias", "log_scale"} if k % 2 == 0 else
                                  {"conv_0", "out", "scale_factor"})


def test_cond_at_resizes_broadcasts_or_passes_through():
    low = _data((2, 2, 2, 3), 7)
    np.testing.assert_array_equal(models.cond_at(low, 2, 2), low)
    np.testing.assert_allclose(models.cond_at(low, 4, 4),
                               jax.image.resize(low, (2, 4, 4, 3), "linear"))
    assert models.cond_at(low, 1, 1).shape == (2, 1, 1, 3)
    label = _data((2, 1, 1, 3), 8)
    np.testing.assert_array_equal(models.cond_at(label, 4, 2),
                                  np.broadcast_to(label, (2, 4, 2, 3)))
    assert models.cond_at(None, 4, 4) is None


def test_bad_inputs_are_refused_in_one_line():
    key = jax.random.key(0)
    x = jnp.zeros(X_SHAPE)
    glow, nvp = MODELS["glow"], MODELS["realnvp"]
    for m, args, method, match in [
            (glow, (x, jnp.zeros((2, 3))), None, "cond must be \\[B, h, w, Cc\\] with B = 2"),
            (nvp, (x, jnp.zeros((3, 4, 4, 2))), None, "got shape \\(3, 4, 4, 2\\)"),
            (glow, (jnp.zeros((2, 4, 6, 1)),), None, "divisible by 4, got H=4, W=6"),
            (nvp, (jnp.zeros((2, 8, 1)),), None, "images \\[B, H, W, C\\]"),
            (models.RealNVP(num_scales=0), (x,), None, "num_scales >= 1, got 0"),
            (models.Glow(steps_per_level=0), (x,), None, "steps_per_level >= 1"),
            (nvp, ([x],), "decode", "decodes 2 latents, got 1"),
            (glow, (key, (8, 8, 1)), "sample", "images \\[B, H, W, C\\]")]:
        with pytest.raises(ValueError, match=match) as e:
            if method is None:
                jax.eval_shape(m.init, key, *args)
            else:
                variables = jax.eval_shape(m.init, key, x)
                jax.eval_shape(lambda v: m.apply(v, *args, method=getattr(m, method)),
                               variables)
        assert len(str(e.value).splitlines()) == 1
