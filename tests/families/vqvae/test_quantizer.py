"""Vector quantiser: the expanded-distance argmin against brute force, the straight-through
estimator's identity Jacobian, each loss term's gradient reaching only its own side, the EMA
codebook step against a hand-written numpy reference (Laplace smoothing included), no update
when train=False, the same codebook on every device of a named axis as on the concatenated
batch, perplexity on exact cases, dead-code restarts (starved codes moved onto batch vectors,
live codes bit-identical, the same restarts on every device, threshold 0 the plain EMA step),
and one-line refusals."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.families.vqvae import quantizer as vq

K, D = 8, 4


def _data(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)


def _ema_init(q, z):
    return jax.jit(lambda a: q.init(jax.random.key(0), a, train=True))(jnp.asarray(z))


def _codebook_params(seed=9):
    """Variables of ``update="loss"`` drawn in numpy (no compiled initialiser)."""
    codebook = np.random.default_rng(seed).normal(size=(K, D)).astype(np.float32)
    return {"params": {"codebook": jnp.asarray(codebook)}}


def test_nearest_code_is_the_brute_force_argmin():
    """codes = argmin over an explicit [N, K] float64 distance matrix, where the best and second
    best codes differ by more than float32 rounding; the expansion makes no [N, K, D] tensor
    (it is checked on [2, 3, 50, D] inputs: any leading shape)."""
    rng = np.random.default_rng(1)
    z = rng.normal(size=(2, 3, 50, D)).astype(np.float32)
    codebook = rng.normal(size=(K, D)).astype(np.float32)
    codes = np.asarray(vq.nearest_code(jnp.asarray(z), jnp.asarray(codebook)))
    assert codes.shape == (2, 3, 50) and codes.dtype == np.int32
    dist = ((z.astype(np.float64)[..., None, :] - codebook.astype(np.float64)) ** 2).sum(-1)
    top2 = np.sort(dist, axis=-1)[..., :2]
    clear = top2[..., 1] - top2[..., 0] > 1e-4
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(codes[clear], dist.argmin(-1)[clear])
    d = vq.squared_distances(jnp.asarray(z), jnp.asarray(codebook))
    np.testing.assert_allclose(np.asarray(d), dist, rtol=1e-4, atol=1e-4)
    jaxpr = jax.make_jaxpr(vq.nearest_code)(jnp.asarray(z), jnp.asarray(codebook))
    largest = max(int(np.prod(v.aval.shape)) for e in jaxpr.eqns for v in e.outvars)
    assert largest <= 300 * K  # [N, K] at most, never [N, K, D]


def test_straight_through_has_the_identity_jacobian_and_the_value_of_z_q():
    """Forward, z_q_st = z_q; backward, grad_{z_e} f(z_q_st) = (grad f)(z_q) for a nonlinear f."""
    q = vq.VectorQuantizer(K, D)
    z = jnp.asarray(_data(16))
    variables = _codebook_params()
    w = jnp.asarray(np.random.default_rng(2).normal(size=(16, D)), jnp.float32)

    def f(a):
        return jnp.sum(jnp.sin(a) * w)

    @jax.jit
    def run(v, a):
        z_q_st, aux = q.apply(v, a, train=False)
        z_q = v["params"]["codebook"][aux["codes"]]
        grad_st = jax.grad(lambda b: f(q.apply(v, b, train=False)[0]))(a)
        return z_q_st, z_q, grad_st, jax.grad(f)(z_q)

    z_q_st, z_q, grad_st, grad_at_z_q = run(variables, z)
    np.testing.assert_allclose(np.asarray(z_q_st), np.asarray(z_q), atol=1e-6)
    np.testing.assert_allclose(np.asarray(grad_st), np.asarray(grad_at_z_q), atol=1e-6)
    assert np.abs(np.asarray(grad_st)).min() > 0  # not trivially zero


def test_codebook_loss_moves_only_the_codes_and_commitment_only_z_e():
    """d codebook_loss / d z_e = 0 and d / d codebook != 0; the reverse for the commitment
    term, which carries beta: commitment = beta ||z_e - e||^2 and codebook = ||z_e - e||^2."""
    q = vq.VectorQuantizer(K, D, beta=0.3)
    z = jnp.asarray(_data(16))
    variables = _codebook_params()

    def term(name):
        return lambda v, a: q.apply(v, a, train=False)[1][name]

    @jax.jit
    def run(v, a):
        grads = {name: jax.grad(term(name), argnums=(0, 1))(v, a)
                 for name in ("codebook_loss", "commitment_loss")}
        return grads, q.apply(v, a, train=False)[1]

    grads, aux = run(variables, z)
    for name, moves_codes in (("codebook_loss", True), ("commitment_loss", False)):
        g_v, g_z = grads[name]
        g_codes = np.abs(np.asarray(g_v["params"]["codebook"])).max()
        g_z = np.abs(np.asarray(g_z)).max()
        assert (g_codes > 0, g_z > 0) == (moves_codes, not moves_codes), (name, g_codes, g_z)
    z_q = np.asarray(variables["params"]["codebook"])[np.asarray(aux["codes"])]
    sq = ((np.asarray(z) - z_q) ** 2).sum() / 16
    np.testing.assert_allclose(float(aux["codebook_loss"]), sq, rtol=1e-5)
    np.testing.assert_allclose(float(aux["commitment_loss"]), 0.3 * sq, rtol=1e-5)


def _numpy_ema(state, z, decay, eps):
    """Appendix A.1 by hand: EMA counts and sums, Laplace-smoothed counts, e = m / N~."""
    codebook = np.asarray(state["codebook"], np.float64)
    dist = ((z[:, None, :] - codebook[None]) ** 2).sum(-1)
    codes = dist.argmin(-1)
    n_k = np.bincount(codes, minlength=K).astype(np.float64)
    sums = np.zeros((K, D))
    np.add.at(sums, codes, z)
    cluster = decay * np.asarray(state["cluster_size"], np.float64) + (1 - decay) * n_k
    embed = decay * np.asarray(state["embed_sum"], np.float64) + (1 - decay) * sums
    n = cluster.sum()
    smoothed = (cluster + eps) / (n + K * eps) * n
    return cluster, embed, embed / smoothed[:, None], n_k


def test_ema_update_matches_the_numpy_reference_and_eval_leaves_the_state():
    """Two train steps (the second from a moved state) equal the numpy reference, with a large
    eps so the Laplace smoothing matters and with unused codes; the state starts at N_k = 1,
    m_k = e_k; train=False returns no change; the EMA mode has no codebook loss and no params."""
    decay, eps = 0.9, 0.5
    q = vq.VectorQuantizer(K, D, update="ema", decay=decay, eps=eps)
    z = _data(24, seed=3) * 0.3 + 0.5  # a shifted cloud: some codes unused
    variables = _ema_init(q, z)
    assert "params" not in variables
    state = variables["vq_state"]
    np.testing.assert_array_equal(np.asarray(state["cluster_size"]), np.ones(K))
    np.testing.assert_array_equal(np.asarray(state["embed_sum"]), np.asarray(state["codebook"]))

    step = jax.jit(lambda v, a, train: q.apply(v, a, train=train, mutable=["vq_state"]),
                   static_argnums=2)
    (_, aux), frozen = step(variables, jnp.asarray(z), False)
    jax.tree.map(np.testing.assert_array_equal, frozen["vq_state"], state)
    assert float(aux["codebook_loss"]) == 0.0

    for seed in (3, 4):
        z = _data(24, seed=seed) * 0.3 + 0.5
        cluster, embed, codebook, n_k = _numpy_ema(state, z.astype(np.float64), decay, eps)
        assert (n_k == 0).any() and (n_k > 0).sum() >= 2
        (_, aux), new = step({"vq_state": state}, jnp.asarray(z), True)
        new = new["vq_state"]
        np.testing.assert_allclose(np.asarray(new["cluster_size"]), cluster, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(new["embed_sum"]), embed, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(new["codebook"]), codebook, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(aux["code_counts"]), n_k)
        state = new


def test_ema_over_a_named_axis_gives_every_device_the_codebook_of_the_global_batch():
    """Under jax.vmap(axis_name="devices") over 2 devices with different data (and different
    code usage), both devices end with the same state, equal to one step on the concatenated
    batch; the usage statistics are global too."""
    q_dev = vq.VectorQuantizer(K, D, update="ema", decay=0.9, eps=0.5, axis_name="devices")
    q_one = vq.VectorQuantizer(K, D, update="ema", decay=0.9, eps=0.5)
    z = np.stack([_data(12, seed=5) + 0.8, _data(12, seed=6) - 0.8])  # [2 devices, 12, D]
    codebook = _codebook_params()["params"]["codebook"]
    variables = {"vq_state": {"codebook": codebook, "cluster_size": jnp.ones(K),
                              "embed_sum": codebook}}

    def step(q, a):
        (_, aux), new = q.apply(variables, a, train=True, mutable=["vq_state"])
        return new, aux

    @jax.jit
    def run(a):
        per_device = jax.vmap(lambda b: step(q_dev, b), axis_name="devices")(a)
        return per_device, step(q_one, a.reshape(-1, D))

    (new, aux), (ref, aux_one) = run(jnp.asarray(z))
    for name, leaf in new["vq_state"].items():
        leaf = np.asarray(leaf)
        np.testing.assert_array_equal(leaf[0], leaf[1], err_msg=name)
        np.testing.assert_allclose(leaf[0], np.asarray(ref["vq_state"][name]), rtol=1e-5,
                                   atol=1e-6, err_msg=name)
    assert not np.allclose(np.asarray(ref["vq_state"]["codebook"]),
                           np.asarray(variables["vq_state"]["codebook"]))
    np.testing.assert_array_equal(np.asarray(aux["code_counts"][0]), aux_one["code_counts"])
    np.testing.assert_allclose(np.asarray(aux["perplexity"]), float(aux_one["perplexity"]),
                               rtol=1e-6)


def test_perplexity_is_k_for_uniform_usage_and_1_for_one_code():
    """Inputs on the codes themselves: each code once -> perplexity K, usage 1; all on one code
    -> perplexity 1, usage 1/K; and the pure function on counts with zeros."""
    q = vq.VectorQuantizer(K, D)
    variables = _codebook_params()
    codebook = variables["params"]["codebook"]  # [K, D]
    usage = jax.jit(lambda a: q.apply(variables, a, train=False)[1])
    aux = usage(jnp.concatenate([codebook, codebook]))  # every code twice
    np.testing.assert_allclose(float(aux["perplexity"]), K, rtol=1e-5)
    assert float(aux["code_usage"]) == 1.0
    aux = usage(jnp.tile(codebook[3:4], (2 * K, 1)))  # code 3, 2K times
    np.testing.assert_allclose(float(aux["perplexity"]), 1.0, rtol=1e-6)
    assert float(aux["code_usage"]) == 1.0 / K
    np.testing.assert_allclose(float(vq.perplexity(jnp.array([5.0, 0.0, 5.0, 0.0]))), 2.0,
                               rtol=1e-6)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"num_codes": 1}, "num_codes must be an integer >= 2"),
    ({"num_codes": 0}, "num_codes must be an integer >= 2"),
    ({"code_dim": 0}, "code_dim must be a positive integer"),
    ({"beta": -0.1}, "beta (commitment weight) must be a finite number >= 0"),
    ({"beta": float("nan")}, "beta (commitment weight) must be a finite number >= 0"),
    ({"update": "kmeans"}, "choose one of ('loss', 'ema')"),
    ({"decay": 1.0}, "decay must be in (0, 1)"),
    ({"eps": 0.0}, "eps (Laplace smoothing) must be > 0"),
    ({"update": "ema", "restart_threshold": -1.0}, "restart_threshold must be a finite number"),
    ({"update": "ema", "restart_threshold": float("inf")}, "restart_threshold must be a finite"),
    ({"restart_threshold": 1.0}, "restart_threshold=1.0 needs update='ema'"),
])
def test_bad_quantizer_fields_are_refused_in_one_line(kwargs, fragment):
    fields = {"num_codes": K, "code_dim": D, **kwargs}
    with pytest.raises(ValueError) as e:
        vq.VectorQuantizer(**fields)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_mismatched_code_dimension_is_refused_in_one_line():
    """z_e with D != code_dim (module), a codebook that is not [K, D] or does not match z."""
    q = vq.VectorQuantizer(K, D)
    for call, fragment in (
        (lambda: q.init(jax.random.key(0), jnp.zeros((3, D + 1)), train=False), "code_dim = 4"),
        (lambda: vq.nearest_code(jnp.zeros((3, D)), jnp.zeros((K, D + 1))), "dimension D=5"),
        (lambda: vq.nearest_code(jnp.zeros((3, D)), jnp.zeros((K,))), "codebook must be [K, D]"),
    ):
        with pytest.raises(ValueError) as e:
            call()
        assert fragment in str(e.value) and "\n" not in str(e.value)


def test_ema_train_step_without_a_mutable_state_is_refused():
    q = vq.VectorQuantizer(K, D, update="ema")
    codebook = _codebook_params()["params"]["codebook"]
    variables = {"vq_state": {"codebook": codebook, "cluster_size": jnp.ones(K),
                              "embed_sum": codebook}}
    with pytest.raises(ValueError, match=r"mutable=\['vq_state'\]"):
        q.apply(variables, jnp.asarray(_data(4)), train=True)


def _ema_variables(codebook):
    return {"vq_state": {"codebook": codebook, "cluster_size": jnp.ones(K),
                         "embed_sum": codebook}}


def _starved(n, first=0, seed=7):
    """[n, D] vectors each within ~0.05 of one of the codes first, first + 1 (mod 4) ... of
    _codebook_params(): codes 4..K-1 get no assignment."""
    codebook = np.asarray(_codebook_params()["params"]["codebook"])
    noise = np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)
    return codebook[(first + np.arange(n)) % 4] + 0.05 * noise


DECAY, THRESHOLD = 0.9, 0.95  # one step: unused N_k = 0.9 < 0.95, used N_k >= 1


@functools.cache
def _restart_step():
    """Jitted (threshold-0 step, restart step) from the same state, batch and key."""
    q_off = vq.VectorQuantizer(K, D, update="ema", decay=DECAY)
    q_on = vq.VectorQuantizer(K, D, update="ema", decay=DECAY, restart_threshold=THRESHOLD)

    @jax.jit
    def run(variables, z, key):
        off = q_off.apply(variables, z, train=True, mutable=["vq_state"])  # no rngs needed
        on = q_on.apply(variables, z, train=True, mutable=["vq_state"], rngs={"restart": key})
        state = variables["vq_state"]
        plain = vq.ema_update(state["cluster_size"], state["embed_sum"], z, off[0][1]["codes"],
                              decay=DECAY, eps=q_off.eps)
        return off, on, plain

    return run


def test_starved_codes_are_restarted_onto_batch_vectors_and_live_codes_are_untouched():
    """Codes 4..7 get no assignment, so their N_k = 0.9 < threshold 0.95: each is moved onto a
    distinct row of the batch (e_k = m_k = z_r, N_k = 1), and wins that row at the next step;
    codes 0..3 end bit-identical to the step without restarts; a different key picks other
    rows; this step's outputs do not change."""
    run = _restart_step()
    variables = _ema_variables(_codebook_params()["params"]["codebook"])
    z = _starved(24)
    ((zq_off, aux_off), off), ((zq_on, aux_on), on), _ = run(variables, jnp.asarray(z),
                                                             jax.random.key(3))
    assert sorted(np.unique(np.asarray(aux_on["codes"]))) == [0, 1, 2, 3]
    assert int(aux_on["restarted"]) == 4 and int(aux_off["restarted"]) == 0
    np.testing.assert_array_equal(np.asarray(zq_on), np.asarray(zq_off))
    off, on = off["vq_state"], on["vq_state"]
    for name in ("codebook", "embed_sum", "cluster_size"):
        np.testing.assert_array_equal(np.asarray(on[name])[:4], np.asarray(off[name])[:4],
                                      err_msg=name)
    restarted = np.asarray(on["codebook"])[4:]
    rows = [np.flatnonzero((z == e).all(-1)) for e in restarted]
    assert all(len(r) == 1 for r in rows), rows  # each exactly one row of the batch
    assert len({int(r[0]) for r in rows}) == 4  # distinct rows
    np.testing.assert_array_equal(np.asarray(on["embed_sum"])[4:], restarted)
    np.testing.assert_array_equal(np.asarray(on["cluster_size"])[4:], np.ones(4))
    assert not np.allclose(np.asarray(off["codebook"])[4:], restarted)

    _, (_, other), _ = run(variables, jnp.asarray(z), jax.random.key(4))
    _, ((_, aux_next), _), _ = run({"vq_state": on}, jnp.asarray(z), jax.random.key(5))
    assert not np.array_equal(np.asarray(other["vq_state"]["codebook"])[4:], restarted)
    assert (np.asarray(aux_next["code_counts"])[4:] > 0).all()  # restarted codes now win rows


def test_restart_threshold_0_is_the_plain_ema_step():
    """With restart_threshold=0 (the default) a train step needs no "restart" rng, restarts
    nothing although codes are starved, and its state is bit-identical to ema_update's."""
    run = _restart_step()
    variables = _ema_variables(_codebook_params()["params"]["codebook"])
    ((_, aux), off), _, plain = run(variables, jnp.asarray(_starved(24)), jax.random.key(3))
    assert int(aux["restarted"]) == 0
    assert (np.asarray(off["vq_state"]["cluster_size"]) < THRESHOLD).sum() == 4
    for name, leaf in zip(("cluster_size", "embed_sum", "codebook"), plain):
        np.testing.assert_array_equal(np.asarray(off["vq_state"][name]), np.asarray(leaf),
                                      err_msg=name)


def test_restarts_over_a_named_axis_are_the_same_on_every_device():
    """Under jax.vmap(axis_name="devices") over 2 devices whose batches use different codes and
    whose restart keys differ, both devices restart the same codes to the same vectors of the
    global batch, equal to one device on the concatenated batch with device 0's key."""
    kwargs = {"update": "ema", "decay": DECAY, "restart_threshold": THRESHOLD}
    q_dev = vq.VectorQuantizer(K, D, axis_name="devices", **kwargs)
    q_one = vq.VectorQuantizer(K, D, **kwargs)
    variables = _ema_variables(_codebook_params()["params"]["codebook"])
    z = np.stack([_starved(12, first=0, seed=1), _starved(12, first=2, seed=2)])  # [2, 12, D]
    keys = jax.random.split(jax.random.key(11), 2)

    def step(q, a, key):
        (_, aux), new = q.apply(variables, a, train=True, mutable=["vq_state"],
                                rngs={"restart": key})
        return new["vq_state"], aux["restarted"]

    @jax.jit
    def run(a, k):
        return (jax.vmap(functools.partial(step, q_dev), axis_name="devices")(a, k),
                step(q_one, a.reshape(-1, D), k[0]))

    (new, restarted), (ref, restarted_one) = run(jnp.asarray(z), keys)
    assert restarted.tolist() == [4, 4] and int(restarted_one) == 4
    for name, leaf in new.items():
        leaf, ref_leaf = np.asarray(leaf), np.asarray(ref[name])
        np.testing.assert_array_equal(leaf[0], leaf[1], err_msg=name)
        np.testing.assert_allclose(leaf[0][:4], ref_leaf[:4], rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(leaf[0][4:], ref_leaf[4:], err_msg=name)  # the same rows
    flat = z.reshape(-1, D)
    rows = [int(np.flatnonzero((flat == e).all(-1))[0]) for e in np.asarray(ref["codebook"])[4:]]
    assert min(rows) < 12 <= max(rows), rows  # drawn from both devices' batches


def test_a_batch_smaller_than_the_codebook_restarts_codes_onto_its_rows():
    """restart_dead_codes with 3 batch vectors and K = 8 codes all dead (drawn with
    replacement): every code becomes one of the 3 rows, with N_k = 1 and m_k = e_k."""
    z = _data(3, seed=8)
    codebook = _codebook_params()["params"]["codebook"]
    cluster, embed, new, dead = vq.restart_dead_codes(
        jnp.zeros(K), codebook, codebook, jnp.asarray(z), jax.random.key(0), threshold=0.5)
    assert np.asarray(dead).all()
    hits = (np.asarray(new)[:, None, :] == z[None]).all(-1)  # [K, 3]
    assert (hits.sum(-1) == 1).all()
    np.testing.assert_array_equal(np.asarray(embed), np.asarray(new))
    np.testing.assert_array_equal(np.asarray(cluster), np.ones(K))


def test_restart_without_a_restart_rng_is_refused_in_one_line():
    q = vq.VectorQuantizer(K, D, update="ema", restart_threshold=1.0)
    variables = _ema_variables(_codebook_params()["params"]["codebook"])
    with pytest.raises(ValueError) as e:
        q.apply(variables, jnp.asarray(_data(4)), train=True, mutable=["vq_state"])
    assert "rngs={'restart': key}" in str(e.value) and "\n" not in str(e.value)
