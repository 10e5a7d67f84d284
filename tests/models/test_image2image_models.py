"""Image-to-image GAN players (pix2pix, SRGAN, CycleGAN): shapes and ranges at 8x8 and 28x28,
exact layer plans, the U-Net's skip connections, pixel shuffle against a numpy loop, the
PatchGAN receptive field against the gradient, instance-norm statistics, shape errors raised
before the first layer, dropout / batch-norm modes, and jit / no-jit agreement.

Shapes come from `jax.eval_shape`; numbers use variables drawn in numpy (`_variables`): a
compiled Flax initialiser costs seconds of XLA compile on CPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from gmzoo.models.image2image import (
    CycleGANDiscriminator,
    PatchDiscriminator,
    Pix2PixGenerator,
    ResnetGenerator,
    SRDiscriminator,
    SRGenerator,
    TinyPatchDiscriminator,
    TinyPix2PixGenerator,
    TinyResnetGenerator,
    TinySRDiscriminator,
    TinySRGenerator,
    param_count,
    patch_layers,
    patch_output_size,
    pix2pix_depth,
    pix2pix_shape_error,
    pixel_shuffle,
    pixel_unshuffle,
    receptive_field,
    resnet_shape_error,
)

from model_variables import numpy_variables

SHAPES = [(8, 8, 1), (28, 28, 1)]
KEY = jax.random.key(0)
F = 4  # features of the tiny variants


_variables = numpy_variables


def _images(b, shape, seed=1):
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (b, *shape)), jnp.float32)


def _tree_shapes(tree):
    return {"/".join(k): tuple(v.shape) for k, v in flatten_dict(tree).items()}


def _sds(*shape):
    return jax.ShapeDtypeStruct(shape, jnp.float32)


# ---- shapes and ranges ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_output_shapes(shape):
    x = _sds(2, *shape)
    h, w = (patch_output_size(s, 1) for s in shape[:2])
    cases = [
        (Pix2PixGenerator(), (x,), (2, *shape)),
        (Pix2PixGenerator(out_channels=3), (x,), (2, *shape[:2], 3)),
        (PatchDiscriminator(), (x, _sds(2, *shape[:2], 3)), (2, h, w, 1)),
        (CycleGANDiscriminator(), (x,), (2, h, w, 1)),
        (SRDiscriminator(), (x,), (2,)),
        (ResnetGenerator(), (x,), (2, *shape)),
    ]
    for model, args, expected in cases:
        variables = jax.eval_shape(model.init, KEY, *args)
        assert jax.eval_shape(model.apply, variables, *args).shape == expected, model
    assert (h, w) == ((2, 2) if shape[0] == 8 else (12, 12))


@pytest.mark.parametrize("shape", SHAPES)
def test_generators_on_real_numbers_are_finite_and_in_range(shape):
    x = 2.0 * _images(3, shape)
    for model in (TinyPix2PixGenerator(), TinyResnetGenerator()):
        out = jax.jit(model.apply)(_variables(model, x, scale=3.0), x)
        assert out.shape == (3, *shape) and np.all(np.isfinite(out))
        assert np.all(np.abs(out) <= 1.0) and np.max(np.abs(out)) > 0.3, model  # tanh, not stuck
        assert np.ptp(np.asarray(out)[:, :, :, 0], axis=(1, 2)).min() > 1e-2  # not constant


@pytest.mark.parametrize("scale, low", [(4, 7), (2, 14)])
def test_sr_generator_maps_low_resolution_to_28x28(scale, low):
    g = TinySRGenerator(scale=scale)
    x = _images(2, (low, low, 1))
    out = jax.jit(g.apply)(_variables(g, x, scale=3.0), x)
    assert out.shape == (2, 28, 28, 1) and np.all(np.isfinite(out))
    assert np.all(np.abs(out) <= 1.0) and np.max(np.abs(out)) > 0.3
    params = _variables(g, x)["params"]
    ups = sorted(k for k in params if k.startswith("up_") and k.endswith("_conv"))
    assert ups == [f"up_{i}_conv" for i in range({2: 1, 4: 2}[scale])]  # log2(scale) x2 stages
    assert all(params[k]["kernel"].shape == (3, 3, F, 4 * F) for k in ups)  # to C r^2 channels
    d = TinySRDiscriminator()
    logits = jax.jit(d.apply)(_variables(d, out), out)
    assert logits.shape == (2,) and np.all(np.isfinite(logits)) and abs(logits[0] - logits[1]) > 0


# ---- layer plans -----------------------------------------------------------------------------------

def test_pix2pix_depth_follows_the_image_size():
    assert pix2pix_depth(8, 8) == 3 and pix2pix_depth(28, 28) == 2 and pix2pix_depth(256, 256) == 8
    assert pix2pix_depth(512, 512) == 8 and pix2pix_depth(8, 8, max_depth=2) == 2
    assert pix2pix_depth(8, 28) == 2 and pix2pix_depth(6, 8) == 1


@pytest.mark.parametrize("shape", SHAPES)
def test_pix2pix_layer_plan_exact_parameter_trees(shape):
    """8x8: 8 -> 4 -> 2 -> 1 (no norm on the input layer nor on the 1x1 bottleneck); 28x28:
    28 -> 14 -> 7. Each up block after the first takes the concatenated skip (2 F_i channels)."""
    variables = jax.eval_shape(TinyPix2PixGenerator().init, KEY, _sds(2, *shape))
    if shape[0] == 8:
        expected = {
            "down_0/kernel": (4, 4, 1, F), "down_0/bias": (F,),
            "down_1/kernel": (4, 4, F, 2 * F), "down_norm_1/scale": (2 * F,), "down_norm_1/bias": (2 * F,),
            "down_2/kernel": (4, 4, 2 * F, 4 * F), "down_2/bias": (4 * F,),  # 1x1 bottleneck: no norm
            "up_1/kernel": (3, 3, 2 * F, 4 * F), "up_1/bias": (2 * F,),
            "up_norm_1/scale": (2 * F,), "up_norm_1/bias": (2 * F,),
            "up_0/kernel": (3, 3, F, 4 * F), "up_0/bias": (F,),  # input: concat(d_1, e_1)
            "up_norm_0/scale": (F,), "up_norm_0/bias": (F,),
            "out/kernel": (3, 3, 1, 2 * F), "out/bias": (1,),  # input: concat(d_0, e_0)
        }
    else:
        expected = {
            "down_0/kernel": (4, 4, 1, F), "down_0/bias": (F,),
            "down_1/kernel": (4, 4, F, 2 * F), "down_norm_1/scale": (2 * F,), "down_norm_1/bias": (2 * F,),
            "up_0/kernel": (3, 3, F, 2 * F), "up_0/bias": (F,),
            "up_norm_0/scale": (F,), "up_norm_0/bias": (F,),
            "out/kernel": (3, 3, 1, 2 * F), "out/bias": (1,),
        }
    assert _tree_shapes(variables["params"]) == expected
    assert set(variables["batch_stats"]) == {k.split("/")[0] for k in expected if "norm" in k}


def test_patch_and_sr_discriminator_and_resnet_layer_plans():
    x = _sds(2, 28, 28, 1)
    d = jax.eval_shape(TinyPatchDiscriminator().init, KEY, x, x)["params"]
    assert _tree_shapes(d) == {
        "conv_0/kernel": (4, 4, 2, F), "conv_0/bias": (F,),  # the pair: 1 + 1 channels
        "conv_1/kernel": (4, 4, F, 2 * F), "norm_1/scale": (2 * F,), "norm_1/bias": (2 * F,),
        "logit/kernel": (4, 4, 2 * F, 1), "logit/bias": (1,),
    }
    cyc = jax.eval_shape(CycleGANDiscriminator(features=F).init, KEY, x)
    assert set(cyc) == {"params"} and cyc["params"]["conv_0"]["kernel"].shape == (4, 4, 1, F)
    sr = jax.eval_shape(TinySRDiscriminator().init, KEY, x)["params"]
    assert {k: v["kernel"].shape for k, v in sr.items() if "kernel" in v} == {
        "conv_in": (3, 3, 1, F), "stage_0_conv_1": (3, 3, F, F),  # 28 -> 14
        "stage_1_conv_0": (3, 3, F, 2 * F), "stage_1_conv_1": (3, 3, 2 * F, 2 * F),  # 14 -> 7
        "dense": (7 * 7 * 2 * F, 8), "logit": (8, 1),
    }
    res = _tree_shapes(jax.eval_shape(TinyResnetGenerator().init, KEY, x)["params"])
    kernels = {k[: -len("/kernel")]: v for k, v in res.items() if k.endswith("kernel")}
    assert kernels == {
        "conv_in": (7, 7, 1, F), "down_0": (3, 3, F, 2 * F), "down_1": (3, 3, 2 * F, 4 * F),
        **{f"block_{i}_conv_{j}": (3, 3, 4 * F, 4 * F) for i in range(2) for j in range(2)},
        "up_0": (3, 3, 2 * F, 4 * F), "up_1": (3, 3, F, 2 * F), "conv_out": (7, 7, F, 1),
    }
    assert {k for k in res if k.endswith("bias") and "norm" not in k} == {
        "up_0/bias", "up_1/bias", "conv_out/bias"}  # convs before instance norm have no bias


def test_default_sizes():
    """Parameter counts of the default players, for the record."""
    def count(model, *args):
        return param_count(jax.eval_shape(model.init, KEY, *args)["params"])

    x8, x28 = _sds(2, 8, 8, 1), _sds(2, 28, 28, 1)
    assert count(Pix2PixGenerator(), x8) == 1_101_057
    assert count(Pix2PixGenerator(), x28) == 207_489
    assert count(PatchDiscriminator(), x28, x28) == 135_489
    # the paper's 70x70 PatchGAN on 256x256 RGB pairs: the official code's 2,768,705
    assert count(PatchDiscriminator(num_layers=3), _sds(1, 256, 256, 3), _sds(1, 256, 256, 3)) == 2_768_705
    assert count(SRGenerator(scale=4), _sds(2, 7, 7, 1)) == 1_526_612
    assert count(SRGenerator(scale=2), _sds(2, 14, 14, 1)) == 1_378_899
    assert count(SRDiscriminator(), x28) == 1_865_473
    assert count(ResnetGenerator(), x28) == 7_829_057


# ---- the U-Net's skip connections -----------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_unet_skips_carry_the_input_past_a_dead_bottleneck(shape):
    """Zero the innermost encoder conv (the bottleneck is then a constant): the output still
    depends on the input, through the skips. Zero also the skip halves of the decoder kernels
    (the concat puts the skip last): now the output is constant."""
    g = TinyPix2PixGenerator()
    x = _images(1, shape)
    variables = _variables(g, x)
    params = variables["params"]
    depth = pix2pix_depth(*shape[:2])
    dead = dict(params, **{f"down_{depth - 1}": jax.tree.map(jnp.zeros_like, params[f"down_{depth - 1}"])})

    weights = _images(1, shape, seed=7)  # a random projection of the output: no cancellations
    grad = jax.jit(jax.grad(lambda p, v: jnp.vdot(weights, g.apply(dict(variables, params=p), v)),
                            argnums=1))

    def jac(p):
        return np.asarray(grad(p, x))

    assert np.count_nonzero(jac(params)) == x.size
    assert np.count_nonzero(jac(dead)) == x.size  # every pixel still reaches the output
    cut = dict(dead)
    for name in ["out"] + [f"up_{i}" for i in range(depth - 2)]:  # the layers fed by a concat
        kernel = cut[name]["kernel"]
        cut[name] = dict(cut[name], kernel=kernel.at[..., kernel.shape[-1] // 2:].set(0.0))
    assert np.count_nonzero(jac(cut)) == 0
    apply = jax.jit(g.apply)
    np.testing.assert_array_equal(apply(dict(variables, params=cut), x),
                                  apply(dict(variables, params=cut), -x))  # the output is constant


# ---- pixel shuffle ------------------------------------------------------------------------------------

def _pixel_shuffle_reference(x, r):
    b, h, w, d = x.shape
    c = d // (r * r)
    out = np.zeros((b, h * r, w * r, c), x.dtype)
    for i in range(r):
        for j in range(r):
            for k in range(c):
                out[:, i::r, j::r, k] = x[:, :, :, (i * r + j) * c + k]
    return out


@pytest.mark.parametrize("r, c", [(2, 1), (2, 3), (3, 2), (4, 1)])
def test_pixel_shuffle_against_numpy_and_its_inverse(r, c):
    x = np.random.default_rng(r * 10 + c).normal(size=(2, 5, 3, r * r * c)).astype(np.float32)
    out = np.asarray(pixel_shuffle(jnp.asarray(x), r))
    np.testing.assert_array_equal(out, _pixel_shuffle_reference(x, r))
    np.testing.assert_array_equal(pixel_unshuffle(out, r), x)
    y = np.random.default_rng(1).normal(size=(2, 5 * r, 3 * r, c)).astype(np.float32)
    np.testing.assert_array_equal(pixel_shuffle(pixel_unshuffle(y, r), r), y)
    # the conv's channel (i r + j) C + c lands at offset (i, j) of each r x r output block
    assert out[0, r - 1, 0, c - 1] == x[0, 0, 0, (r - 1) * r * c + c - 1]


def test_pixel_shuffle_errors():
    with pytest.raises(ValueError, match=r"channels 6 must be divisible by r\^2 = 4"):
        pixel_shuffle(jnp.zeros((1, 2, 2, 6)), 2)
    with pytest.raises(ValueError, match="divisible by r = 2, got 3x4"):
        pixel_unshuffle(jnp.zeros((1, 3, 4, 1)), 2)


# ---- PatchGAN receptive field -------------------------------------------------------------------------

def test_receptive_field_closed_form():
    assert receptive_field(patch_layers(1)) == (16, 2, -5)  # pix2pix's 16x16 PatchGAN
    assert receptive_field(patch_layers(2)) == (34, 4, -11)
    assert receptive_field(patch_layers(3)).size == 70  # the paper's 70x70 PatchGAN
    assert receptive_field([(3, 1, 1)] * 4) == (9, 1, -4)
    assert patch_output_size(256, 3) == 30 and patch_output_size(8, 2) == 0


@pytest.mark.parametrize("num_layers", [1, 2])
def test_patch_gradient_is_nonzero_exactly_in_the_receptive_field(num_layers):
    """d logit[i, j] / d x is nonzero exactly on rows [i J + o, i J + o + R) and the same
    columns (clipped to the image), with (R, J, o) = receptive_field(patch_layers(k))."""
    shape = (28, 28, 2)
    d = TinyPatchDiscriminator(num_layers=num_layers)
    x, cond = _images(1, shape), _images(1, shape, seed=5)
    variables = _variables(d, x, cond)
    jac = np.asarray(jax.jacrev(lambda v: d.apply(variables, v, cond)[0, :, :, 0])(x))
    jac = jac[:, :, 0]  # [h, w, H, W, C]
    size, stride, offset = receptive_field(patch_layers(num_layers))
    side = patch_output_size(28, num_layers)
    assert jac.shape[:2] == (side, side)
    rows = np.arange(28)
    for i in range(side):
        for j in range(side):
            inside_r = (rows >= i * stride + offset) & (rows < i * stride + offset + size)
            inside_c = (rows >= j * stride + offset) & (rows < j * stride + offset + size)
            expected = inside_r[:, None, None] & inside_c[None, :, None] & np.ones(2, bool)
            np.testing.assert_array_equal(jac[i, j] != 0, expected, err_msg=f"{i},{j}")
    assert size < 28 or num_layers == 2  # k = 1: windows strictly inside the image exist


# ---- instance norm --------------------------------------------------------------------------------

def test_instance_norm_statistics_and_batch_independence():
    """Every InstanceNorm in the ResnetGenerator, from its captured input u and output y:
    z = (y - bias) / scale has per example and channel (over H, W) mean 0 and variance
    var(u) / (var(u) + 1e-5), i.e. 1 up to epsilon, and equals (u - mean(u)) / sqrt(var(u) + eps)
    in float64; one example's output ignores the others."""
    g = TinyResnetGenerator()
    x = 3.0 * _images(3, (8, 8, 1)) + 1.0
    variables = _variables(g, x)
    _, state = jax.jit(lambda v, a: g.apply(v, a, capture_intermediates=True,
                                            mutable=["intermediates"]))(variables, x)
    inter, params = state["intermediates"], variables["params"]
    norm_inputs = {"norm_in": "conv_in", "down_norm_0": "down_0", "down_norm_1": "down_1",
                   "up_norm_0": "up_0", "up_norm_1": "up_1",
                   **{f"block_{i}_norm_{j}": f"block_{i}_conv_{j}" for i in range(2) for j in range(2)}}
    assert {k for k in inter if "norm" in k} == set(norm_inputs)  # c7s1, d2F, d4F, 2 R4F, u2F, uF
    for name, source in norm_inputs.items():
        u = np.asarray(inter[source]["__call__"][0], np.float64)  # [B, h, w, C]
        y = np.asarray(inter[name]["__call__"][0], np.float64)
        z = (y - np.asarray(params[name]["bias"])) / np.asarray(params[name]["scale"])
        var_u = u.var(axis=(1, 2))  # [B, C]
        np.testing.assert_allclose(z.mean(axis=(1, 2)), 0.0, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(z.var(axis=(1, 2)), var_u / (var_u + 1e-5), atol=2e-4, err_msg=name)
        assert np.median(var_u) > 1e-2, name  # so the variance check is close to 1
        expected = (u - u.mean(axis=(1, 2), keepdims=True)) / np.sqrt(var_u[:, None, None] + 1e-5)
        np.testing.assert_allclose(z, expected, atol=2e-4, err_msg=name)
    other = x.at[1:].set(-5.0 * x[1:])
    for model in (g, CycleGANDiscriminator(features=F)):
        v = variables if model is g else _variables(model, x)
        apply = jax.jit(model.apply, static_argnames="train")
        np.testing.assert_allclose(apply(v, x, train=True)[0], apply(v, other, train=True)[0],
                                   rtol=1e-5, atol=1e-6)


# ---- errors before any compute ----------------------------------------------------------------------

@pytest.mark.parametrize("model, shape, match", [
    (Pix2PixGenerator(), (6, 6, 1), r"H and W must be divisible by 4 \(8x8 -> 1x1 in 3 levels, 28x28 "
                                    r"-> 7x7 in 2\).*got 6x6x1"),
    (Pix2PixGenerator(), (7, 28, 1), "got 7x28x1"),
    (Pix2PixGenerator(max_depth=1), (8, 8, 1), "max_depth=1"),
    (ResnetGenerator(), (4, 4, 1), r"divisible by 4 and >= 8 \(8x8 -> 2x2, 28x28 -> 7x7\); got 4x4x1"),
    (ResnetGenerator(), (28, 26, 1), "got 28x26x1"),
    (CycleGANDiscriminator(num_layers=2), (8, 8, 1),
     r"num_layers=2, receptive field 34\) needs H and W >= 12, got 8x8"),
    (SRGenerator(), (7, 7), r"images \[B, H, W, C\]"),
])
def test_unsupported_shapes_are_refused_before_the_first_layer(model, shape, match):
    x = jnp.zeros((2, *shape))
    with pytest.raises(ValueError, match=match) as info:
        jax.eval_shape(model.init, KEY, x)
    assert "\n" not in str(info.value)
    # With no variables at all the check still fires first (not Flax's missing-parameter error).
    with pytest.raises(ValueError, match=match):
        model.apply({}, x)


def test_shape_error_helpers():
    ok = {(h, w) for h in range(1, 33) for w in (4, 8, 28) if pix2pix_shape_error((h, w, 1)) is None}
    assert ok == {(h, w) for h in range(4, 33, 4) for w in (4, 8, 28)}
    ok = {h for h in range(1, 33) if resnet_shape_error((h, h, 3)) is None}
    assert ok == {8, 12, 16, 20, 24, 28, 32}
    assert "(H, W, C)" in pix2pix_shape_error((28, 28)) and "(H, W, C)" in resnet_shape_error((8, 8))


@pytest.mark.parametrize("build, match", [
    (lambda: SRGenerator(scale=3), r"scale must be one of \(2, 4\)"),
    (lambda: PatchDiscriminator(norm="layer"), r"norm must be one of \('batch', 'instance'\)"),
    (lambda: Pix2PixGenerator(features=0), "must be positive"),
    (lambda: Pix2PixGenerator(dropout_rate=1.0), r"dropout_rate must be in \[0, 1\)"),
    (lambda: ResnetGenerator(num_blocks=0), "must be positive"),
    (lambda: SRDiscriminator(num_stages=0), "must be positive"),
])
def test_bad_configurations_raise_at_construction(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_pairing_errors():
    x = jnp.zeros((2, 8, 8, 1))
    with pytest.raises(ValueError, match=r"paired=True\) judges \(cond, x\): pass cond"):
        jax.eval_shape(TinyPatchDiscriminator().init, KEY, x)
    with pytest.raises(ValueError, match=r"x's B, H, W \(2, 8, 8\), got \(2, 4, 4, 1\)"):
        jax.eval_shape(TinyPatchDiscriminator().init, KEY, x, jnp.zeros((2, 4, 4, 1)))
    with pytest.raises(ValueError, match=r"paired=False\) judges single images but got cond"):
        jax.eval_shape(CycleGANDiscriminator(features=F).init, KEY, x, x)


# ---- modes and transformation hygiene ----------------------------------------------------------------

def test_pix2pix_dropout_and_batch_norm_modes():
    g = TinyPix2PixGenerator()
    x = _images(2, (8, 8, 1))
    variables = _variables(g, x)
    apply = jax.jit(g.apply, static_argnames=("train", "mutable"))
    with pytest.raises(Exception, match="dropout"):  # train=True needs the dropout stream
        jax.eval_shape(lambda v: g.apply(v, x, train=True, mutable=["batch_stats"]), variables)

    def train(seed):
        return apply(variables, x, train=True, mutable=("batch_stats",),
                     rngs={"dropout": jax.random.key(seed)})

    (a, stats), (b, _), (c, _) = train(1), train(1), train(2)
    np.testing.assert_array_equal(a, b)
    assert np.max(np.abs(a - c)) > 1e-3  # dropout is on in train mode
    for path, old in flatten_dict(variables["batch_stats"]).items():
        assert not np.allclose(flatten_dict(stats["batch_stats"])[path], old, atol=1e-4), path
    np.testing.assert_array_equal(apply(variables, x), apply(variables, x))  # eval: deterministic
    no_dropout = TinyPix2PixGenerator(dropout_rate=0.0)
    out, _ = jax.eval_shape(lambda v: no_dropout.apply(v, x, train=True, mutable=["batch_stats"]),
                            variables)  # no rng needed
    assert out.shape == x.shape


@pytest.mark.parametrize("case", ["pix2pix", "patch", "srgan_g", "srgan_d", "cyclegan_g"])
def test_jit_and_no_jit_agree(case):
    x8 = _images(2, (8, 8, 1))
    rngs = {"dropout": jax.random.key(3)}
    model, args = {
        "pix2pix": (TinyPix2PixGenerator(), (_images(2, (28, 28, 1)),)),
        "patch": (TinyPatchDiscriminator(norm="batch"), (x8, x8[::-1])),
        "srgan_g": (TinySRGenerator(scale=4), (_images(2, (7, 7, 1)),)),
        "srgan_d": (TinySRDiscriminator(), (x8,)),
        "cyclegan_g": (TinyResnetGenerator(), (x8,)),
    }[case]
    variables = _variables(model, *args)

    def run(v, *a):
        return model.apply(v, *a, train=True, mutable=["batch_stats"], rngs=rngs)

    eager = run(variables, *args)
    jitted = jax.jit(run)
    compiled = jitted(variables, *args)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(compiled)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(compiled))
    jitted(variables, *args)
    assert jitted._cache_size() == 1  # a second call does not recompile
