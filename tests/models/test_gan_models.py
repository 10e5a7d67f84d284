"""GAN players: shapes and ranges at 8x8 and 28x28, the DCGAN layer plan (exact parameter
trees), batch norm modes, spectral norm against numpy's SVD, the projection discriminator
against its formula evaluated by hand, label handling, and jit / no-jit agreement.

Shapes come from `jax.eval_shape`; numbers use variables drawn in numpy (`_variables`): a
compiled Flax initialiser costs seconds of XLA compile on CPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from gmzoo.models.gan import (
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
    SNDCGANDiscriminator,
    TinyDCGANDiscriminator,
    TinyDCGANGenerator,
    ToyDiscriminator,
    ToyGenerator,
    dcgan_image_shape_error,
    param_count,
)

from model_variables import numpy_variables

SHAPES = [(8, 8, 1), (28, 28, 1)]
KEY = jax.random.key(0)
F = 4  # features of the tiny variants
Z = 8  # latent_dim of the tiny generator


_variables = numpy_variables


def _images(b, shape, seed=1):
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (b, *shape)), jnp.float32)


def _latents(b, dim=Z, seed=2):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(b, dim)), jnp.float32)


def _tree_shapes(tree):
    return {"/".join(k): tuple(v.shape) for k, v in flatten_dict(tree).items()}


# ---- shapes, ranges and the layer plan --------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("num_classes", [0, 3])
def test_dcgan_output_shapes(shape, num_classes):
    z = jax.ShapeDtypeStruct((2, 100), jnp.float32)
    x = jax.ShapeDtypeStruct((2, *shape), jnp.float32)
    y = (jax.ShapeDtypeStruct((2,), jnp.int32),) if num_classes else ()
    g = DCGANGenerator(image_shape=shape, num_classes=num_classes)
    g_vars = jax.eval_shape(g.init, KEY, z, *y)
    assert jax.eval_shape(g.apply, g_vars, z, *y).shape == (2, *shape)
    for d in (DCGANDiscriminator(image_shape=shape, num_classes=num_classes),
              SNDCGANDiscriminator(image_shape=shape, num_classes=num_classes),
              DCGANDiscriminator(image_shape=shape, num_classes=num_classes, conditioning="concat")):
        d_vars = jax.eval_shape(d.init, KEY, x, *y)
        assert jax.eval_shape(d.apply, d_vars, x, *y).shape == (2,)


def test_mlp_output_shapes():
    z = jax.ShapeDtypeStruct((5, 3), jnp.float32)
    g = ToyGenerator()
    assert jax.eval_shape(g.apply, jax.eval_shape(g.init, KEY, z), z).shape == (5, 2)
    img = MLPGenerator(out_shape=(8, 8, 1), hidden=(16,), output_activation=jnp.tanh)
    assert jax.eval_shape(img.apply, jax.eval_shape(img.init, KEY, z), z).shape == (5, 8, 8, 1)
    x = jax.ShapeDtypeStruct((5, 8, 8, 1), jnp.float32)  # flattened inside
    d = ToyDiscriminator()
    assert jax.eval_shape(d.apply, jax.eval_shape(d.init, KEY, x), x).shape == (5,)


@pytest.mark.parametrize("shape", SHAPES)
def test_dcgan_ranges_on_real_numbers(shape):
    g = TinyDCGANGenerator(image_shape=shape)
    d = TinyDCGANDiscriminator(image_shape=shape)
    z = 3.0 * _latents(4)
    g_vars = _variables(g, z, scale=3.0)
    x = jax.jit(g.apply)(g_vars, z)
    assert x.shape == (4, *shape) and np.all(np.isfinite(x))
    assert np.all(np.abs(x) <= 1.0) and np.max(np.abs(x)) > 0.5  # tanh, and not stuck at 0
    logits = jax.jit(d.apply)(_variables(d, x), x)
    assert logits.shape == (4,) and np.all(np.isfinite(logits)) and np.ptp(logits) > 0


@pytest.mark.parametrize("build", [
    lambda: DCGANGenerator(image_shape=(10, 10, 1)),
    lambda: DCGANDiscriminator(image_shape=(10, 10, 1)),
    lambda: SNDCGANDiscriminator(image_shape=(10, 10, 1), num_classes=10),
], ids=["generator", "discriminator", "sn_discriminator"])
def test_unsupported_image_shape_is_refused_at_construction(build):
    # Construction runs no JAX computation: the error comes before any init or apply.
    with pytest.raises(ValueError, match=r"divisible by 4 .*8x8.*28x28.*got 10x10x1") as info:
        build()
    assert "\n" not in str(info.value)


def test_shape_check_accepts_exactly_multiples_of_four():
    ok = {(h, w) for h in range(1, 33) for w in (4, 6, 28) if dcgan_image_shape_error((h, w, 1)) is None}
    assert ok == {(h, w) for h in range(4, 33, 4) for w in (4, 28)}
    assert dcgan_image_shape_error((8, 8, 3)) is None
    assert "(H, W, C)" in dcgan_image_shape_error((28, 28))
    assert "got 28x6x1" in dcgan_image_shape_error((28, 6, 1))


@pytest.mark.parametrize("shape", SHAPES)
def test_dcgan_layer_plan_exact_parameter_trees(shape):
    """D: two conv kernels and the final linear logit, nothing else dense; G: one projection
    and two UpConvs. Exact trees, so a hidden Dense layer or a misplaced BN fails."""
    h4, w4 = shape[0] // 4, shape[1] // 4
    x = jax.ShapeDtypeStruct((2, *shape), jnp.float32)
    d_vars = jax.eval_shape(TinyDCGANDiscriminator(image_shape=shape).init, KEY, x)
    assert _tree_shapes(d_vars["params"]) == {
        "conv_0/kernel": (4, 4, 1, F), "conv_0/bias": (F,),  # input layer: no BN, so a bias
        "conv_1/kernel": (4, 4, F, 2 * F),  # followed by BN: no bias
        "bn_1/scale": (2 * F,), "bn_1/bias": (2 * F,),
        "logit/kernel": (h4 * w4 * 2 * F, 1), "logit/bias": (1,),
    }
    assert _tree_shapes(d_vars["batch_stats"]) == {"bn_1/mean": (2 * F,), "bn_1/var": (2 * F,)}
    z = jax.ShapeDtypeStruct((2, Z), jnp.float32)
    g_vars = jax.eval_shape(TinyDCGANGenerator(image_shape=shape).init, KEY, z)
    assert _tree_shapes(g_vars["params"]) == {
        "project/kernel": (Z, h4 * w4 * 2 * F),
        "bn_project/scale": (2 * F,), "bn_project/bias": (2 * F,),
        "deconv_0/kernel": (3, 3, F, 2 * F), "deconv_0/bias": (F,),
        "bn_0/scale": (F,), "bn_0/bias": (F,),
        "deconv_1/kernel": (3, 3, 1, F), "deconv_1/bias": (1,),  # output layer: no BN
    }


def test_default_sizes():
    """The default (F = 64, Z = 100) players, for the record."""
    def count(model, *args):
        return param_count(jax.eval_shape(model.init, KEY, *args)["params"])

    z = jax.ShapeDtypeStruct((2, 100), jnp.float32)
    x8, x28 = (jax.ShapeDtypeStruct((2, *s), jnp.float32) for s in SHAPES)
    assert count(DCGANGenerator(image_shape=(8, 8, 1)), z) == 125_953
    assert count(DCGANGenerator(image_shape=(28, 28, 1)), z) == 701_953
    assert count(DCGANDiscriminator(image_shape=(8, 8, 1)), x8) == 132_929
    assert count(DCGANDiscriminator(image_shape=(28, 28, 1)), x28) == 138_689


# ---- batch norm --------------------------------------------------------------------------------

def test_batch_norm_train_updates_stats_and_eval_uses_running_averages():
    shape = (8, 8, 1)
    d = TinyDCGANDiscriminator(image_shape=shape)
    g = TinyDCGANGenerator(image_shape=shape)
    x, z = 0.5 + _images(4, shape), _latents(4)
    for model, inp in ((d, x), (g, z)):
        variables = _variables(model, inp)
        apply = jax.jit(model.apply, static_argnames=("train", "mutable"))
        out, updates = apply(variables, inp, train=True, mutable=("batch_stats",))
        for path, old in flatten_dict(variables["batch_stats"]).items():
            new = flatten_dict(updates["batch_stats"])[path]
            assert not np.allclose(new, old, atol=1e-4), path  # the running averages moved
        # eval: example 0's output does not depend on the rest of the batch ...
        other = inp.at[1:].set(-inp[1:] * 3.0)
        np.testing.assert_allclose(apply(variables, inp, train=False)[0],
                                   apply(variables, other, train=False)[0], rtol=1e-5, atol=1e-6)
        # ... while in train mode (batch statistics) it does
        assert not np.allclose(out[0], apply(variables, other, train=True,
                                             mutable=("batch_stats",))[0][0], atol=1e-4)


# ---- spectral norm -----------------------------------------------------------------------------

def test_spectral_norm_power_iteration_reaches_the_largest_singular_value():
    """Weights drawn 5x too large (sigma_max about 5-10). After 40 power iterations (one per
    train-mode call) W / sigma has largest singular value 1 +- 1e-3 for every normalised weight
    (conv kernels reshaped to [kh kw c_in, c_out], the logit kernel, the projection embedding)."""
    shape = (8, 8, 1)
    d = TinyDCGANDiscriminator(image_shape=shape, spectral_norm=True, num_classes=3)
    x, y = _images(4, shape), jnp.array([0, 1, 2, 0])
    variables = _variables(d, x, y, scale=5.0)
    params = variables["params"]
    assert not any(k.startswith("bn") for k in params)  # spectral norm replaces batch norm
    assert set(params) == {"conv_0", "conv_1", "logit", "projection"}
    assert set(variables["batch_stats"]) == {"conv_0_sn", "conv_1_sn", "logit_sn", "projection_sn"}

    step = jax.jit(lambda stats: d.apply({"params": params, "batch_stats": stats}, x, y,
                                         train=True, mutable=("batch_stats",))[1]["batch_stats"])
    stats = variables["batch_stats"]
    for _ in range(40):
        stats = step(stats)
    for layer, weight in (("conv_0", "kernel"), ("conv_1", "kernel"), ("logit", "kernel"),
                          ("projection", "embedding")):
        w = np.asarray(params[layer][weight])
        w = w.reshape(-1, w.shape[-1])
        top = np.linalg.svd(w, compute_uv=False)[0]
        sigma = float(stats[f"{layer}_sn"][f"{layer}/{weight}/sigma"])
        assert top > 2.0, (layer, top)  # so that unnormalised weights would fail the next line
        np.testing.assert_allclose(np.linalg.svd(w / sigma, compute_uv=False)[0], 1.0, atol=1e-3,
                                   err_msg=layer)


def test_spectral_norm_output_is_invariant_to_weight_scale():
    """The forward pass uses W / sigma(W): scaling every weight matrix by 7 leaves the logits
    unchanged (biases untouched), which fails if any layer skips the normalisation."""
    shape = (8, 8, 1)
    d = TinyDCGANDiscriminator(image_shape=shape, spectral_norm=True, num_classes=3,
                               conditioning="concat")
    x, y = _images(3, shape), jnp.array([2, 0, 1])
    variables = _variables(d, x, y)
    scaled = dict(variables, params=jax.tree.map(lambda p: p * 7.0 if p.ndim > 1 else p,
                                                 variables["params"]))
    apply = jax.jit(d.apply)
    np.testing.assert_allclose(apply(scaled, x, y), apply(variables, x, y), rtol=1e-4, atol=1e-5)
    plain = TinyDCGANDiscriminator(image_shape=shape, batch_norm=False, num_classes=3,
                                   conditioning="concat")
    unnormalised = jax.jit(plain.apply)
    assert not np.allclose(unnormalised({"params": scaled["params"]}, x, y),
                           unnormalised({"params": variables["params"]}, x, y), atol=1e-3)


# ---- conditioning ------------------------------------------------------------------------------

def _hand_phi(params, x):
    """phi(x) of the BN-free DCGAN discriminator, written out with lax convolutions."""
    h = x
    for i in range(2):
        p = params[f"conv_{i}"]
        h = jax.lax.conv_general_dilated(h, p["kernel"], (2, 2), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC")) + p["bias"]
        h = jnp.where(h > 0, h, 0.2 * h)
    return h.reshape(h.shape[0], -1)


@pytest.mark.parametrize("shape", SHAPES)
def test_projection_discriminator_matches_its_formula(shape):
    """logit = psi(phi(x)) + <embed(y), phi(x)> (Miyato & Koyama 2018, eq. 3), evaluated by hand
    from the parameter tree; a label change moves the logit by <embed(y1) - embed(y2), phi(x)>."""
    d = TinyDCGANDiscriminator(image_shape=shape, batch_norm=False, num_classes=5,
                               conditioning="projection")
    x, y = _images(3, shape), jnp.array([4, 0, 2])
    params = _variables(d, x, y)["params"]
    assert set(params) == {"conv_0", "conv_1", "logit", "projection"}
    apply = jax.jit(d.apply, static_argnames="mutable")
    logits, state = apply({"params": params}, x, y, mutable="intermediates")
    phi = _hand_phi(params, x)  # [B, H/4 W/4 2F]
    np.testing.assert_allclose(state["intermediates"]["features"][0], phi, rtol=1e-5, atol=1e-5)
    embed = params["projection"]["embedding"]  # [K, F_phi]
    psi = phi @ params["logit"]["kernel"][:, 0] + params["logit"]["bias"][0]
    np.testing.assert_allclose(logits, psi + jnp.sum(embed[y] * phi, axis=-1), rtol=1e-4, atol=1e-5)

    y2 = jnp.array([1, 3, 2])
    logits2, state2 = apply({"params": params}, x, y2, mutable="intermediates")
    np.testing.assert_array_equal(state2["intermediates"]["features"][0],
                                  state["intermediates"]["features"][0])  # phi ignores y
    np.testing.assert_allclose(logits - logits2, jnp.sum((embed[y] - embed[y2]) * phi, axis=-1),
                               rtol=1e-4, atol=1e-5)
    assert abs(logits[2] - logits2[2]) < 1e-6 and np.all(np.abs(logits - logits2)[:2] > 1e-3)


def test_concat_discriminator_responds_to_the_label():
    shape = (8, 8, 1)
    d = TinyDCGANDiscriminator(image_shape=shape, num_classes=3, conditioning="concat")
    x = _images(3, shape)
    variables = _variables(d, x, jnp.zeros(3, jnp.int32))
    # the label embedding enters as extra input channels of the first conv
    assert variables["params"]["conv_0"]["kernel"].shape == (4, 4, 1 + 4, F)
    assert variables["params"]["label_embed"]["embedding"].shape == (3, 4)
    apply = jax.jit(d.apply)
    a, b = apply(variables, x, jnp.array([0, 1, 2])), apply(variables, x, jnp.array([1, 1, 0]))
    assert abs(a[1] - b[1]) < 1e-6 and np.all(np.abs(a - b)[[0, 2]] > 1e-4)


@pytest.mark.parametrize("generator", [
    TinyDCGANGenerator(image_shape=(8, 8, 1), num_classes=4),
    MLPGenerator(out_shape=(2,), hidden=(16,), num_classes=4),
], ids=["dcgan", "mlp"])
def test_conditional_generator_depends_on_the_label(generator):
    z = jnp.tile(_latents(1, Z), (4, 1))  # one z for every row
    variables = _variables(generator, z, jnp.zeros(4, jnp.int32))
    out = jax.jit(generator.apply)(variables, z, jnp.arange(4))
    flat = np.asarray(out).reshape(4, -1)
    gaps = [np.max(np.abs(flat[i] - flat[j])) for i in range(4) for j in range(i)]
    assert min(gaps) > 1e-3  # every pair of labels gives a different sample


@pytest.mark.parametrize("build, inp", [
    (lambda n: TinyDCGANGenerator(image_shape=(8, 8, 1), num_classes=n), jnp.zeros((2, Z))),
    (lambda n: TinyDCGANDiscriminator(image_shape=(8, 8, 1), num_classes=n), jnp.zeros((2, 8, 8, 1))),
    (lambda n: MLPGenerator(out_shape=(2,), num_classes=n), jnp.zeros((2, 3))),
    (lambda n: MLPDiscriminator(num_classes=n, conditioning="concat"), jnp.zeros((2, 2))),
], ids=["dcgan_g", "dcgan_d", "mlp_g", "mlp_d"])
def test_label_errors(build, inp):
    y = jnp.array([0, 1])
    with pytest.raises(ValueError, match=r"unconditional \(num_classes=0\) but got labels"):
        jax.eval_shape(build(0).init, KEY, inp, y)
    with pytest.raises(ValueError, match=r"conditional \(num_classes=3\): pass integer labels y"):
        jax.eval_shape(build(3).init, KEY, inp)
    with pytest.raises(ValueError, match=r"integers of shape \[2\]"):
        jax.eval_shape(build(3).init, KEY, inp, jnp.array([0.0, 1.0]))
    jax.eval_shape(build(3).init, KEY, inp, y)  # the right call works


@pytest.mark.parametrize("build, match", [
    (lambda: DCGANDiscriminator(image_shape=(8, 8, 1), conditioning="film"), "conditioning must be one of"),
    (lambda: DCGANGenerator(image_shape=(8, 8, 1), num_classes=-1), "num_classes must be >= 0"),
    (lambda: DCGANGenerator(image_shape=(8, 8, 1), latent_dim=0), "latent_dim and features must be positive"),
    (lambda: MLPDiscriminator(hidden=()), "at least one hidden layer"),
    (lambda: MLPGenerator(out_shape=()), "out_shape must be positive"),
])
def test_bad_configurations_raise_at_construction(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_wrong_input_shapes_are_named():
    g = TinyDCGANGenerator(image_shape=(8, 8, 1))
    with pytest.raises(ValueError, match=r"z must be \[B, 8\], got \(2, 5\)"):
        jax.eval_shape(g.init, KEY, jnp.zeros((2, 5)))
    d = TinyDCGANDiscriminator(image_shape=(8, 8, 1))
    with pytest.raises(ValueError, match=r"built for images \(8, 8, 1\), got .*\(2, 28, 28, 1\)"):
        jax.eval_shape(d.init, KEY, jnp.zeros((2, 28, 28, 1)))


# ---- transformation hygiene --------------------------------------------------------------------

@pytest.mark.parametrize("case", ["dcgan_g_train", "sn_projection_d_train", "mlp_sn_d"])
def test_jit_and_no_jit_agree(case):
    y = jnp.array([0, 2, 1])
    if case == "dcgan_g_train":
        model, args = TinyDCGANGenerator(image_shape=(8, 8, 1), num_classes=3), (_latents(3), y)
    elif case == "sn_projection_d_train":
        model = TinyDCGANDiscriminator(image_shape=(8, 8, 1), spectral_norm=True, num_classes=3)
        args = (_images(3, (8, 8, 1)), y)
    else:
        model, args = MLPDiscriminator(hidden=(16, 16), spectral_norm=True), (_images(3, (2,)),)
    variables = _variables(model, *args)

    def run(v, *a):
        return model.apply(v, *a, train=True, mutable=["batch_stats"])

    eager = run(variables, *args)
    jitted = jax.jit(run)
    compiled = jitted(variables, *args)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(compiled)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(compiled))
    jitted(variables, *args)
    assert jitted._cache_size() == 1  # a second call does not recompile
