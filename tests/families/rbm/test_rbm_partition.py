"""log Z of an RBM: exact enumeration against brute force and the W = 0 closed form; AIS against
the exact value at 20 hidden units, its standard error against the spread of independent runs,
and the averaging bug of tensorflow/probability#267."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gmzoo.data.embedded import load_digits
from gmzoo.families.rbm import partition, rbm


def random_params(v, h, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return {"W": jnp.asarray(rng.normal(size=(v, h)) * scale, jnp.float32),
            "b": jnp.asarray(rng.normal(size=v), jnp.float32),
            "c": jnp.asarray(rng.normal(size=h), jnp.float32)}


def brute_force_log_z(params):
    v_dim, h_dim = params["W"].shape
    vs = jnp.asarray(list(itertools.product([0, 1], repeat=v_dim)), jnp.float32)
    hs = jnp.asarray(list(itertools.product([0, 1], repeat=h_dim)), jnp.float32)
    v, h = jnp.repeat(vs, len(hs), axis=0), jnp.tile(hs, (len(vs), 1))
    return jax.nn.logsumexp(-rbm.energy(params, v, h))


@pytest.fixture(scope="module")
def digits():
    """Binarized digits (threshold 0.5) ``[1437, 64]`` and an RBM with 20 hidden units trained
    on them by CD-1 (1,500 SGD steps, lr 0.1): weights of std ~0.6, a realistic scale."""
    x = jnp.asarray(load_digits("train").images.reshape(-1, 64) / 16.0 > 0.5, jnp.float32)
    rng = np.random.default_rng(0)
    params = {"W": jnp.asarray(rng.normal(size=(64, 20)) * 0.01, jnp.float32),
              "b": rbm.base_rate_logits(x), "c": jnp.zeros(20)}
    tx = optax.sgd(0.1)

    @jax.jit
    def train(params, key):
        def body(carry, k):
            params, opt = carry
            idx = jax.random.randint(jax.random.fold_in(k, 1), (100,), 0, x.shape[0])
            g, _ = jax.grad(rbm.cd_loss, has_aux=True)(params, {"image": x[idx]}, k, k=1)
            updates, opt = tx.update(g, opt)
            return (optax.apply_updates(params, updates), opt), None

        (params, _), _ = jax.lax.scan(body, (params, tx.init(params)), jax.random.split(key, 1500))
        return params

    params = train(params, jax.random.key(0))
    assert 0.3 < float(jnp.std(params["W"])) < 2.0
    return x, params, partition.log_partition_exact(params)


@pytest.mark.parametrize("shape", [(4, 3), (3, 5), (6, 6)])
def test_exact_log_z_matches_brute_force(shape):
    """Both branches (enumerate v when V <= H, else h) and chunking give the joint sum."""
    params = random_params(*shape, scale=2.0)
    expected = brute_force_log_z(params)
    np.testing.assert_allclose(partition.log_partition_exact(params), expected, rtol=1e-5)
    np.testing.assert_allclose(partition.log_partition_exact(params, chunk=4), expected, rtol=1e-5)


@pytest.mark.parametrize("shape", [(10, 12), (12, 10)])
def test_exact_log_z_closed_form_at_zero_weights(shape):
    """W = 0: log Z = sum_i log(1 + e^{b_i}) + sum_j log(1 + e^{c_j})."""
    params = random_params(*shape)
    params["W"] = jnp.zeros(shape)
    expected = jnp.sum(jax.nn.softplus(params["b"])) + jnp.sum(jax.nn.softplus(params["c"]))
    np.testing.assert_allclose(partition.log_partition_exact(params), expected, rtol=1e-6)


def test_exact_log_z_refuses_large_layers():
    with pytest.raises(ValueError, match="use ais"):
        partition.log_partition_exact({"W": jnp.zeros((30, 25)), "b": jnp.zeros(30),
                                       "c": jnp.zeros(25)})


def test_ais_is_exact_when_the_base_is_the_target():
    """W = 0 and base logits = b: every importance weight is the same, sum_j softplus(c_j) -
    H log 2, so the estimate is exact with zero standard error (this catches a base model that
    forgets the 2^H of its hidden units)."""
    params = random_params(10, 7)
    params["W"] = jnp.zeros((10, 7))
    res = partition.ais(params, jax.random.key(0), params["b"], partition.ais_betas(20), 8)
    np.testing.assert_allclose(res.log_z, partition.log_partition_exact(params), rtol=1e-6)
    np.testing.assert_allclose(res.log_weights, res.log_weights[0], atol=1e-5)
    assert float(res.log_z_se) < 1e-5


def test_ais_within_a_tenth_of_a_nat_at_20_hidden_units(digits):
    """100 chains, 3,000 temperatures from the base-rate RBM (training marginals); the exact
    value enumerates the 2^20 hidden states. Normalising the weights by anything but the
    number of chains (tensorflow/probability#267 divided by the number of steps) or not at all
    misses by far more than the tolerance."""
    x, params, exact = digits
    betas = partition.ais_betas(3000)
    res = jax.jit(partition.ais, static_argnums=4)(params, jax.random.key(1),
                                                   rbm.base_rate_logits(x), betas, 100)
    assert abs(float(res.log_z - exact)) < 0.1, (float(res.log_z), float(exact))
    assert float(res.log_z_lower) < float(res.log_z) < float(res.log_z_upper)
    assert 1.0 < float(res.ess) <= 100.0
    log_sum = res.log_z_base + jax.nn.logsumexp(res.log_weights)
    for wrong in (log_sum, log_sum - math.log(len(betas) - 1)):
        assert abs(float(wrong - exact)) > 1.0


def test_ais_standard_error_matches_the_spread_of_runs(digits):
    """16 independent runs (50 chains, 1,000 temperatures): the reported standard error is the
    spread of the estimates (ratio within [0.5, 2]), and their mean is within 0.1 nats."""
    x, params, exact = digits
    base = rbm.base_rate_logits(x)
    runs = jax.jit(jax.vmap(lambda k: partition.ais(params, k, base, partition.ais_betas(1000), 50)))(
        jax.random.split(jax.random.key(2), 16))
    spread, se = float(jnp.std(runs.log_z, ddof=1)), float(jnp.mean(runs.log_z_se))
    assert 0.5 < spread / se < 2.0, (spread, se)
    assert abs(float(jnp.mean(runs.log_z) - exact)) < 0.1


def test_log_mean_exp_and_summary_closed_forms():
    np.testing.assert_allclose(partition.log_mean_exp(jnp.log(jnp.array([1.0, 3.0]))), math.log(2.0),
                               rtol=1e-6)
    # Weights 1 and 3: mean 2, sd (ddof 1) sqrt(2), se of log Z-hat = sqrt(2) / (sqrt(2) * 2).
    res = partition.summarize_log_weights(jnp.log(jnp.array([1.0, 3.0])), 5.0)
    np.testing.assert_allclose(res.log_z, 5.0 + math.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(res.log_z_se, 0.5, rtol=1e-5)
    np.testing.assert_allclose(res.log_z_upper, res.log_z + math.log(2.5), rtol=1e-5)
    assert res.log_z_lower == -np.inf  # 3 se > Z-hat
    np.testing.assert_allclose(res.ess, 16.0 / 10.0, rtol=1e-5)


def test_ais_betas_schedule():
    b = partition.ais_betas(14500)
    assert len(b) == 14501 and b[0] == 0.0 and b[-1] == 1.0 and np.all(np.diff(b) > 0)
    np.testing.assert_allclose([b[500], b[4500]], [0.5, 0.9], rtol=1e-6)
    assert len(partition.ais_betas(7)) == 8
    with pytest.raises(ValueError):
        partition.ais_betas(2)


def test_ais_jit_and_no_jit_agree():
    params = random_params(6, 4, scale=0.5)
    args = (params, jax.random.key(3), jnp.zeros(6), partition.ais_betas(10), 4)
    a = jax.jit(partition.ais, static_argnums=4)(*args)
    with jax.disable_jit():
        b = partition.ais(*args)
    np.testing.assert_allclose(a.log_weights, b.log_weights, rtol=1e-5, atol=1e-5)


def test_heldout_nll_against_enumeration():
    """mean F(v) + exact log Z is mean -log p(v) by enumeration; the standard error is
    sd(F) / sqrt(n) combined with log Z's."""
    params = random_params(4, 3, scale=2.0)
    v = jnp.asarray([[1, 0, 0, 1], [1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 1]], jnp.float32)
    log_z = brute_force_log_z(params)
    out = partition.heldout_nll(params, v, log_z, 0.3)
    f = rbm.free_energy(params, v)
    np.testing.assert_allclose(out.nll, jnp.mean(f + log_z), rtol=1e-6)
    se_examples = np.std(np.asarray(f), ddof=1) / math.sqrt(5)
    np.testing.assert_allclose(out.se, math.sqrt(se_examples ** 2 + 0.09), rtol=1e-5)
