"""The RBM's energies, conditionals, Gibbs sampler and CD / PCD gradients against exhaustive
enumeration of a 4x3 RBM (16 visible x 8 hidden states)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.families.rbm import rbm

V, H = 4, 3
VISIBLE = jnp.asarray(list(itertools.product([0, 1], repeat=V)), jnp.float32)  # [16, 4]
HIDDEN = jnp.asarray(list(itertools.product([0, 1], repeat=H)), jnp.float32)  # [8, 3]
# A data set unlike the model: two "bars", some noise.
DATA = jnp.asarray([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1], [0, 1, 1, 1],
                    [1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]], jnp.float32)


@pytest.fixture(scope="module")
def params():
    """Weights of scale 3: strong couplings, so CD-1 is visibly biased and a broken chain shows."""
    rng = np.random.default_rng(0)
    return {"W": jnp.asarray(rng.normal(size=(V, H)) * 3.0, jnp.float32),
            "b": jnp.asarray(rng.normal(size=V) * 0.5, jnp.float32),
            "c": jnp.asarray(rng.normal(size=H) * 0.5, jnp.float32)}


def joint_energies(params):
    """E(v, h) for every pair, ``[16, 8]``."""
    v = jnp.repeat(VISIBLE, len(HIDDEN), axis=0)
    h = jnp.tile(HIDDEN, (len(VISIBLE), 1))
    return rbm.energy(params, v, h).reshape(len(VISIBLE), len(HIDDEN))


def exact_visible_probs(params):
    return jax.nn.softmax(jax.nn.logsumexp(-joint_energies(params), axis=1))  # [16]


def exact_nll(params):
    """mean -log p(v) over DATA, with log Z summed over all 128 joint states."""
    log_z = jax.nn.logsumexp(-joint_energies(params))
    return jnp.mean(rbm.free_energy(params, DATA)) + log_z


def flat(g):
    return jnp.concatenate([g[k].ravel() for k in ("W", "b", "c")])


def compare(g, g_exact):
    a, b = flat(g), flat(g_exact)
    cos = float(a @ b / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))
    return cos, float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def histogram(v):
    """Share of each of the 16 visible states (row order of VISIBLE)."""
    idx = (v @ (2.0 ** jnp.arange(V - 1, -1, -1))).astype(jnp.int32)
    return jnp.bincount(idx, length=2 ** V) / v.shape[0]


def test_free_energies_sum_out_a_layer(params):
    e = joint_energies(params)
    np.testing.assert_allclose(rbm.free_energy(params, VISIBLE), -jax.nn.logsumexp(-e, axis=1),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rbm.hidden_free_energy(params, HIDDEN),
                               -jax.nn.logsumexp(-e, axis=0), rtol=1e-5, atol=1e-5)


def test_conditionals_match_enumeration(params):
    p_joint = jax.nn.softmax(-joint_energies(params).ravel()).reshape(len(VISIBLE), len(HIDDEN))
    p_h_given_v = p_joint / p_joint.sum(1, keepdims=True)  # [16, 8]
    np.testing.assert_allclose(p_h_given_v @ HIDDEN,
                               jax.nn.sigmoid(rbm.hidden_logits(params, VISIBLE)), atol=1e-5)
    p_v_given_h = (p_joint / p_joint.sum(0, keepdims=True)).T  # [8, 16]
    np.testing.assert_allclose(p_v_given_h @ VISIBLE,
                               jax.nn.sigmoid(rbm.visible_logits(params, HIDDEN)), atol=1e-5)


def test_module_declares_params_and_chains_and_returns_free_energy(params):
    batch = jnp.asarray([[1, 1, 0, 0], [1, 0, 0, 0]], jnp.float32).reshape(2, 2, 2, 1)
    variables = rbm.RBM(num_visible=V, num_hidden=H).init(jax.random.key(0), batch)
    assert jax.tree.map(jnp.shape, variables) == {"params": {"W": (V, H), "b": (V,), "c": (H,)}}
    # b: log-odds of the smoothed marginals (2 + 1) / 4, (1 + 1) / 4, 1 / 4, 1 / 4.
    np.testing.assert_allclose(jax.nn.sigmoid(variables["params"]["b"]), [0.75, 0.5, 0.25, 0.25],
                               rtol=1e-6)
    with_chains = rbm.RBM(num_visible=V, num_hidden=H, num_chains=5).init(jax.random.key(0), batch)
    assert with_chains["chains"]["v"].shape == (5, V)
    module = rbm.RBM(num_visible=V, num_hidden=H, num_chains=5)
    np.testing.assert_allclose(module.apply({"params": params}, VISIBLE.reshape(-1, 2, 2, 1)),
                               rbm.free_energy(params, VISIBLE), rtol=1e-6)


def test_gibbs_chain_samples_the_model(params):
    """8,000 chains, 100 steps: the visible histogram is the exact p(v) (TV ~ 0.01); the same
    chain with one key reused at every step does not sample p(v)."""
    v0 = jax.random.bernoulli(jax.random.key(1), 0.5, (8000, V)).astype(jnp.float32)
    exact = exact_visible_probs(params)
    v, _ = jax.jit(rbm.gibbs_sample, static_argnames="num_steps")(params, jax.random.key(2), v0,
                                                                    num_steps=100)
    assert 0.5 * float(jnp.abs(histogram(v) - exact).sum()) < 0.03
    reused, _ = rbm.gibbs_chain(params, v0, jnp.stack([jax.random.key(2)] * 100))
    assert 0.5 * float(jnp.abs(histogram(reused) - exact).sum()) > 0.1


def test_gibbs_jit_and_no_jit_agree(params):
    v0 = DATA
    a = jax.jit(rbm.gibbs_sample, static_argnames="num_steps")(params, jax.random.key(3), v0, num_steps=5)
    with jax.disable_jit():
        b = rbm.gibbs_sample(params, jax.random.key(3), v0, num_steps=5)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    assert set(np.unique(np.asarray(a[0]))) <= {0.0, 1.0}


def test_cd_gradient_approaches_the_exact_gradient(params):
    """CD-k from 4,000 copies of the data: k = 50 gives the exact gradient of the mean NLL
    (relative error < 3%); CD-1 is biased at these weights (its known bias), and CD-50 with one
    key reused at every Gibbs step is as wrong."""
    g_exact = jax.grad(exact_nll)(params)
    batch = {"image": jnp.tile(DATA, (4000, 1)).reshape(-1, 2, 2, 1)}
    grad = jax.jit(jax.grad(rbm.cd_loss, has_aux=True), static_argnames="k")
    cos, rel = compare(grad(params, batch, jax.random.key(0), k=50)[0], g_exact)
    assert cos > 0.999 and rel < 0.03, (cos, rel)
    cos1, rel1 = compare(grad(params, batch, jax.random.key(0), k=1)[0], g_exact)
    assert rel1 > 0.2, rel1

    def broken_cd(p, batch, key, k):
        v = rbm.flatten(batch["image"])
        v_model, _ = rbm.gibbs_chain(p, v, jnp.stack([key] * k))
        return rbm.free_energy_gap(p, v, v_model)

    _, rel_broken = compare(jax.grad(broken_cd, has_aux=True)(params, batch, jax.random.key(0), 50)[0],
                            g_exact)
    assert rel_broken > 0.2, rel_broken


def test_pcd_gradient_and_persistent_chains(params):
    """PCD: the chains come back advanced as the new model state; once they have mixed, one
    PCD-1 step from 32,000 chains gives the exact gradient (relative error < 3%), while the same
    step from the unmixed initial chains does not."""
    g_exact = jax.grad(exact_nll)(params)
    init = {"chains": {"v": jax.random.bernoulli(jax.random.key(3), 0.5, (32000, V)).astype(jnp.float32)}}
    batch = {"image": DATA}
    step = jax.jit(rbm.pcd_loss, static_argnames="k")
    state = init
    for i in range(20):
        loss, (metrics, new_state) = step(params, batch, jax.random.key(10 + i), k=5, model_state=state)
        assert jax.tree.map(jnp.shape, new_state) == jax.tree.map(jnp.shape, state)
        state = new_state
    assert not np.array_equal(state["chains"]["v"], init["chains"]["v"])
    np.testing.assert_allclose(float(loss), metrics["free_energy_data"] - metrics["free_energy_model"],
                               rtol=1e-5)
    grad = jax.jit(jax.grad(rbm.pcd_loss, has_aux=True), static_argnames="k")
    cos, rel = compare(grad(params, batch, jax.random.key(99), k=1, model_state=state)[0], g_exact)
    assert cos > 0.999 and rel < 0.03, (cos, rel)
    _, rel_cold = compare(grad(params, batch, jax.random.key(99), k=1, model_state=init)[0], g_exact)
    assert rel_cold > 0.2, rel_cold


def test_pcd_without_chains_is_cd(params):
    """Held-out evaluation calls the loss without model state: PCD then is CD-k from the data."""
    batch = {"image": DATA}
    a = rbm.pcd_loss(params, batch, jax.random.key(4), k=3)
    b = rbm.cd_loss(params, batch, jax.random.key(4), k=3)
    np.testing.assert_allclose(a[0], b[0])
    assert set(a[1]) == {"free_energy_data", "free_energy_model", "free_energy_gap",
                         "reconstruction_error"}


def test_reconstruction_error_and_base_rate_closed_forms():
    zero = {"W": jnp.zeros((V, H)), "b": jnp.zeros(V), "c": jnp.zeros(H)}
    # With W = 0 and b = 0 every reconstruction is 1/2: error V / 4 per example.
    np.testing.assert_allclose(rbm.reconstruction_error(zero, DATA), V / 4, rtol=1e-6)
    logits = rbm.base_rate_logits(DATA, pseudocount=1.0)
    p = (DATA.sum(0) + 1) / (len(DATA) + 2)
    np.testing.assert_allclose(jax.nn.sigmoid(logits), p, rtol=1e-6)
