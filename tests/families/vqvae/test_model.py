"""Conv VQ-VAE: shapes of the code map, decode_codes(encode(x)) equal to the reconstruction of
__call__, the loss on closed forms, a jitted Adam step lowering the loss with the codebook
learned by the loss and by EMA, and one-line refusals before any compute."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gmzoo.families.vqvae.model import VQVAE, vqvae_loss

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


@pytest.mark.parametrize("update, downsample", [("ema", 2), ("loss", 4)])
def test_decode_codes_of_encode_is_the_reconstruction(update, downsample):
    """codes = encode(x) are int32 in [0, K) of shape [B, h, w] equal to aux["codes"], and
    decode_codes(codes) equals __call__(x, train=False)'s reconstruction."""
    model = _tiny(update, downsample)
    x = _images()

    @jax.jit
    def run(key):
        v = model.init(key, x, train=False)
        recon, aux = model.apply(v, x, train=False)
        codes = model.apply(v, x, method=VQVAE.encode)
        return recon, aux, codes, model.apply(v, codes, method=VQVAE.decode_codes)

    recon, aux, codes, decoded = run(jax.random.key(1))
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
    variables = jax.jit(lambda k: model.init(k, x, train=True))(jax.random.key(0))
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
