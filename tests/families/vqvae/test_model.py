"""Conv VQ-VAE and VQ-VAE-2: shapes of the code maps, decode_codes(encode(x)) equal to the
reconstruction of __call__, the loss on closed forms, a jitted Adam step lowering the loss with
the codebook learned by the loss and by EMA, VQ-VAE-2's straight-through gradients reaching both
encoders and its EMA step (with restarts) through vqvae_loss, and one-line refusals before any
compute."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gmzoo.families.vqvae.model import VQVAE, VQVAE2, vqvae_loss

K, D = 8, 4
SHAPE = (8, 8, 1)


def _tiny(update="loss", downsample=2):
    return VQVAE(SHAPE, num_codes=K, code_dim=D, downsample=downsample, hidden=8, update=update)


def _images(seed=0):
    """[4, 8, 8, 1] binary images: a bright square on random noise (so codes differ)."""
    rng = np.random.default_rng(seed)
    x = (rng.uniform(size=(4, *SHAPE)) < 0.15).astype(np.float32)
    x[:, 2:6, 2:6] = 1.0
    x[1, :, :4] = 0.0
    return jnp.asarray(x)


def _numpy_variables(model, x, seed=0):
    """Every variable of ``model`` drawn in numpy (weights N(0, 1 / fan-in), biases N(0, 0.1^2);
    the EMA state at N_k = 1, m_k = e_k), shapes from a traced init: the random initialisers
    of a compiled ``init`` cost most of a tiny model's compile time."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    rng = np.random.default_rng(seed)

    def draw(s):
        std = 0.1 if len(s.shape) < 2 else 1 / math.sqrt(math.prod(s.shape[:-1]))
        return jnp.asarray(std * rng.normal(size=s.shape), jnp.float32)

    variables = jax.tree.map(draw, shapes)
    for state in variables.get("vq_state", {}).values():
        state["cluster_size"] = jnp.ones_like(state["cluster_size"])
        state["embed_sum"] = state["codebook"]
    return variables


@pytest.mark.parametrize("update, downsample", [("ema", 2), ("loss", 4)])
def test_decode_codes_of_encode_is_the_reconstruction(update, downsample):
    """codes = encode(x) are int32 in [0, K) of shape [B, h, w] equal to aux["codes"], and
    decode_codes(codes) equals __call__(x, train=False)'s reconstruction."""
    model = _tiny(update, downsample)
    x = _images()

    @jax.jit
    def run(v):
        recon, aux = model.apply(v, x, train=False)
        codes = model.apply(v, x, method=VQVAE.encode)
        return recon, aux, codes, model.apply(v, codes, method=VQVAE.decode_codes)

    recon, aux, codes, decoded = run(_numpy_variables(model, x, seed=1))
    h = 8 // downsample
    assert model.latent_shape == (h, h)
    assert recon.shape == x.shape and codes.shape == (4, h, h) and codes.dtype == jnp.int32
    assert 0 <= int(codes.min()) and int(codes.max()) < K
    np.testing.assert_array_equal(np.asarray(codes), np.asarray(aux["codes"]))
    np.testing.assert_allclose(np.asarray(decoded), np.asarray(recon), rtol=1e-6, atol=1e-6)


def test_loss_is_the_sum_of_its_closed_form_terms():
    """Bernoulli: the summed binary cross-entropy per example; Gaussian of scale s: the squared
    error / (2 s^2) + (H W C / 2) log(2 pi s^2) per example; plus both VQ terms."""
    rng = np.random.default_rng(0)
    x = (rng.uniform(size=(3, 4, 4, 1)) < 0.5).astype(np.float32)
    recon = rng.normal(size=x.shape).astype(np.float32)
    aux = {"codebook_loss": jnp.float32(0.7), "commitment_loss": jnp.float32(0.2),
           "perplexity": jnp.float32(3.0), "code_usage": jnp.float32(0.5)}
    p = 1 / (1 + np.exp(-recon))
    bce = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum((1, 2, 3)).mean()
    loss, metrics = vqvae_loss(jnp.asarray(recon), jnp.asarray(x), aux, "bernoulli")
    np.testing.assert_allclose(float(loss), bce + 0.9, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["recon_nll"]), bce, rtol=1e-5)
    assert float(metrics["perplexity"]) == 3.0 and float(metrics["code_usage"]) == 0.5
    s = 0.1
    gauss = (((x - recon) ** 2).sum((1, 2, 3)) / (2 * s**2)).mean() + 8 * math.log(
        2 * math.pi * s**2)
    loss, _ = vqvae_loss(jnp.asarray(recon), jnp.asarray(x), aux, "gaussian",
                         log_scale=math.log(s))
    np.testing.assert_allclose(float(loss), gauss + 0.9, rtol=1e-5)


@pytest.mark.parametrize("update", ["loss", "ema"])
def test_a_jitted_adam_step_lowers_the_loss(update):
    """20 jitted Adam steps on one tiny binary batch lower the VQ-VAE loss (and the
    reconstruction NLL); with update="ema" the codebook moves through "vq_state" only."""
    model = _tiny(update)
    x = _images(1)
    variables = _numpy_variables(model, x)
    params = variables["params"]
    state = {k: v for k, v in variables.items() if k != "params"}
    tx = optax.adam(1e-2)

    def loss_fn(p, s, batch):
        (recon, aux), new_s = model.apply({"params": p, **s}, batch, train=True,
                                          mutable=["vq_state"])
        loss, metrics = vqvae_loss(recon, batch, aux, "bernoulli")
        return loss, (metrics, new_s)

    @jax.jit
    def step(p, s, opt, batch):
        (_, (metrics, new_s)), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, s, batch)
        updates, opt = tx.update(grads, opt, p)
        return optax.apply_updates(p, updates), new_s, opt, metrics

    opt = tx.init(params)
    history = []
    for _ in range(20):
        params, state, opt, metrics = step(params, state, opt, x)
        history.append(jax.device_get(metrics))
    first, last = history[0], history[-1]
    assert all(np.isfinite(m["loss"]) for m in history)
    assert last["loss"] < 0.8 * first["loss"], (first["loss"], last["loss"])
    assert last["recon_nll"] < first["recon_nll"]
    if update == "ema":
        assert "quantizer" not in params  # the EMA codebook is no param
        moved = np.abs(np.asarray(state["vq_state"]["quantizer"]["codebook"])
                       - np.asarray(variables["vq_state"]["quantizer"]["codebook"])).max()
        assert moved > 1e-3 and first["codebook_loss"] == 0.0


@pytest.mark.parametrize("kwargs, fragment", [
    ({"image_shape": (10, 10, 1), "downsample": 4}, "divisible by 4"),
    ({"image_shape": (28, 28, 1), "downsample": 8}, "divisible by 8"),
    ({"downsample": 3}, "downsample must be a power of two >= 2"),
    ({"downsample": 1}, "downsample must be a power of two >= 2"),
    ({"hidden": 0}, "hidden must be a positive integer"),
    ({"num_codes": 1}, "num_codes must be an integer >= 2"),
    ({"beta": -1.0}, "beta (commitment weight) must be a finite number >= 0"),
    ({"restart_threshold": 1.0}, "restart_threshold=1.0 needs update='ema'"),
])
def test_bad_model_fields_are_refused_in_one_line(kwargs, fragment):
    """Refused when the module is constructed, before any compute."""
    fields = {"image_shape": (28, 28, 1), "num_codes": K, "code_dim": D, **kwargs}
    with pytest.raises(ValueError) as e:
        VQVAE(**fields)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_bad_inputs_are_refused_in_one_line():
    """Images of another shape, codes of another map shape, an unknown likelihood."""
    model = _tiny()
    x = _images()
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    bad = (
        (lambda: model.init(jax.random.key(0), jnp.zeros((2, 12, 12, 1)), train=False),
         "[B, 8, 8, 1]"),
        (lambda: model.apply(variables, jnp.zeros((2, 2, 2), jnp.int32),
                             method=VQVAE.decode_codes), "[B, 4, 4]"),
        (lambda: vqvae_loss(x, x, {}, "poisson"), "likelihood must be one of"),
    )
    for call, fragment in bad:
        with pytest.raises(ValueError) as e:
            call()
        assert fragment in str(e.value) and "\n" not in str(e.value)


def _tiny2(update="loss", **kwargs):
    """8x8 images: bottom codes 4x4, top codes 2x2."""
    return VQVAE2(SHAPE, num_codes=16, code_dim=D, hidden=8, update=update, **kwargs)


@functools.cache
def _vqvae2_outputs():
    """One compile for two tests: the eval forward, encode, decode_codes of the codes, and the
    gradient of sum(recon * w) + aux["codebook_loss"] in train mode, of one tiny VQVAE2."""
    model = _tiny2("loss")
    x = _images(2)
    w = jnp.asarray(np.random.default_rng(3).normal(size=x.shape), jnp.float32)

    def objective(p):
        recon, aux = model.apply({"params": p}, x, train=True)
        return jnp.sum(recon * w) + aux["codebook_loss"]

    @jax.jit
    def run(v):
        recon, aux = model.apply(v, x, train=False)
        top, bottom = model.apply(v, x, method=VQVAE2.encode)
        decoded = model.apply(v, top, bottom, method=VQVAE2.decode_codes)
        return (recon, aux, top, bottom, decoded), jax.grad(objective)(v["params"])

    return model, x, run(_numpy_variables(model, x))


def test_vqvae2_decode_codes_of_encode_is_the_reconstruction():
    """encode(x) = (top [B, 2, 2], bottom [B, 4, 4]) int32 in [0, K), equal to aux's codes, and
    decode_codes of them equals __call__(x, train=False)'s reconstruction; latent_shapes of
    mnist5k's 28x28 are 7x7 and 14x14 (the forward traced at that size, not compiled)."""
    model, x, ((recon, aux, top, bottom, decoded), _) = _vqvae2_outputs()
    assert model.latent_shapes == ((2, 2), (4, 4))
    assert top.shape == (4, 2, 2) and bottom.shape == (4, 4, 4) and recon.shape == x.shape
    for codes, name in ((top, "top_codes"), (bottom, "bottom_codes")):
        assert codes.dtype == jnp.int32 and 0 <= int(codes.min()) and int(codes.max()) < 16
        assert len(np.unique(np.asarray(codes))) > 1  # not one code everywhere
        np.testing.assert_array_equal(np.asarray(codes), np.asarray(aux[name]))
    np.testing.assert_allclose(np.asarray(decoded), np.asarray(recon), rtol=1e-6, atol=1e-6)

    mnist = VQVAE2((28, 28, 1), num_codes=16, code_dim=D, hidden=8)
    assert mnist.latent_shapes == ((7, 7), (14, 14))
    x28 = jnp.zeros((2, 28, 28, 1))
    out = jax.eval_shape(lambda: mnist.init_with_output(jax.random.key(0), x28, train=False)[0])
    assert out[0].shape == x28.shape
    assert out[1]["top_codes"].shape == (2, 7, 7) and out[1]["bottom_codes"].shape == (2, 14, 14)


def test_vqvae2_straight_through_gradients_reach_every_encoder_param():
    """The gradient of a reconstruction objective plus aux["codebook_loss"] is nonzero on every
    param of both encoders (and of the top decoder that conditions the bottom codes): the
    decoder's gradient crosses both quantizers by the straight-through estimator (the codebook
    term has no encoder gradient); both codebooks get the gradient of their own level's term,
    summed into aux["codebook_loss"]."""
    _, _, (_, g) = _vqvae2_outputs()
    encoders = ("bottom_encoder", "top_encoder", "to_top_codes", "to_bottom_codes", "top_decoder")
    for name in encoders:
        for path, leaf in jax.tree_util.tree_leaves_with_path(g[name]):
            assert np.abs(np.asarray(leaf)).max() > 0, (name, jax.tree_util.keystr(path))
    for level in ("top_quantizer", "bottom_quantizer"):
        assert np.abs(np.asarray(g[level]["codebook"])).max() > 0, level


def test_vqvae2_ema_step_with_restarts_updates_both_codebooks():
    """update="ema", restart_threshold=1: one train step under mutable=["vq_state"] moves both
    codebooks (no codebook params), restarts the unused codes of each level (aux["restarted"]
    the sum of the levels'), sums the VQ terms of the levels, and feeds vqvae_loss; without the
    mutable state or the "restart" rng the step is refused."""
    model = _tiny2("ema", restart_threshold=1.0)
    x = _images(3)

    @jax.jit
    def step(variables):
        (recon, aux), new = model.apply(variables, x, train=True, mutable=["vq_state"],
                                        rngs={"restart": jax.random.key(2)})
        return new, aux, vqvae_loss(recon, x, aux, "bernoulli")

    variables = _numpy_variables(model, x)
    new, aux, (loss, metrics) = step(variables)
    assert set(variables["params"]) & {"top_quantizer", "bottom_quantizer"} == set()
    for level in ("top", "bottom"):
        old = np.asarray(variables["vq_state"][f"{level}_quantizer"]["codebook"])
        moved = np.asarray(new["vq_state"][f"{level}_quantizer"]["codebook"]) - old
        assert np.abs(moved).max() > 1e-3
        assert 0 < int(aux[f"{level}_restarted"]) < 16  # the unused codes, not the used ones
        assert float(aux[f"{level}_codebook_loss"]) == 0.0
    assert int(aux["restarted"]) == int(aux["top_restarted"]) + int(aux["bottom_restarted"])
    np.testing.assert_allclose(float(aux["commitment_loss"]), float(aux["top_commitment_loss"])
                               + float(aux["bottom_commitment_loss"]), rtol=1e-6)
    np.testing.assert_allclose(float(metrics["code_usage"]), 0.5 * float(
        aux["top_code_usage"] + aux["bottom_code_usage"]), rtol=1e-6)
    assert np.isfinite(float(loss)) and float(loss) > float(metrics["recon_nll"]) > 0
    for kwargs, fragment in (({"rngs": {"restart": jax.random.key(2)}}, "mutable=['vq_state']"),
                             ({"mutable": ["vq_state"]}, "rngs={'restart': key}")):
        with pytest.raises(ValueError) as e:  # traced only: refused before any compute
            jax.eval_shape(lambda: model.apply(variables, x, train=True, **kwargs))
        assert fragment in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"image_shape": (12, 12, 1), "top_downsample": 4}, "divisible by 8"),
    ({"image_shape": (28, 28, 1), "bottom_downsample": 4, "top_downsample": 2}, "divisible by 8"),
    ({"bottom_downsample": 3}, "bottom_downsample must be a power of two >= 2"),
    ({"top_downsample": 1}, "top_downsample must be a power of two >= 2"),
    ({"hidden": 0}, "hidden must be a positive integer"),
    ({"num_codes": 1}, "num_codes must be an integer >= 2"),
    ({"restart_threshold": 1.0}, "restart_threshold=1.0 needs update='ema'"),
])
def test_bad_vqvae2_fields_are_refused_in_one_line(kwargs, fragment):
    """Refused when the module is constructed, before any compute."""
    fields = {"image_shape": (28, 28, 1), "num_codes": K, "code_dim": D, **kwargs}
    with pytest.raises(ValueError) as e:
        VQVAE2(**fields)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_bad_vqvae2_inputs_are_refused_in_one_line():
    """Images of another shape; top or bottom codes of another map shape or batch size."""
    model = _tiny2()
    x = _images()
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    top, bottom = jnp.zeros((2, 2, 2), jnp.int32), jnp.zeros((2, 4, 4), jnp.int32)

    def decode(t, b):
        return lambda: model.apply(variables, t, b, method=VQVAE2.decode_codes)

    bad = (
        (lambda: model.init(jax.random.key(0), jnp.zeros((2, 8, 8, 3)), train=False),
         "VQVAE2 takes images [B, H, W, C] = [B, 8, 8, 1]"),
        (decode(bottom, bottom), "top_codes) takes codes [B, h, w] = [B, 2, 2]"),
        (decode(top, top), "bottom_codes) takes codes [B, h, w] = [B, 4, 4]"),
        (decode(top, bottom[:1]), "batch sizes 2 and 1"),
    )
    for call, fragment in bad:
        with pytest.raises(ValueError) as e:
            call()
        assert fragment in str(e.value) and "\n" not in str(e.value)
