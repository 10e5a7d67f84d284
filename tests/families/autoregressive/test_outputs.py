"""The per-dimension conditionals: every level's probability sums to one, the discretized
logistic mixture matches its definition computed in float64, log_prob reads the table, and a
draw follows p^(1/T)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmzoo.families.autoregressive import outputs


def _raw(name, levels, k=3, scale=2.0, seed=0):
    p = outputs.num_params(name, levels, k)
    return scale * jax.random.normal(jax.random.key(seed), (5, 4, p))


@pytest.mark.parametrize("name, levels", [("bernoulli", 2), ("categorical", 17),
                                          ("logistic_mix", 17), ("logistic_mix", 256)])
def test_level_probabilities_sum_to_one_and_log_prob_reads_them(name, levels):
    raw = _raw(name, levels)
    table = outputs.level_log_probs(name, raw, levels)  # [5, 4, L]
    assert table.shape == (5, 4, levels)
    np.testing.assert_allclose(np.exp(np.asarray(jax.nn.logsumexp(table, -1))), 1.0, atol=2e-5)
    x = jax.random.randint(jax.random.key(1), (5, 4), 0, levels).astype(jnp.float32)
    lp = outputs.log_prob(name, raw, x, levels)
    expected = np.take_along_axis(np.asarray(table), np.asarray(x, int)[..., None], -1)[..., 0]
    np.testing.assert_allclose(lp, expected, atol=1e-5)


def test_logistic_mixture_matches_its_definition_in_float64():
    """P(k) = sum_j pi_j [sigma((c_k + d - mu_j) / s_j) - sigma((c_k - d - mu_j) / s_j)],
    the edge bins taking the tails, on L = 5 levels of [-1, 1] (d = 1 / (L - 1))."""
    levels, logits = 5, np.array([0.3, -1.0])
    means, log_scales = np.array([-0.4, 0.6]), np.array([-1.2, -2.0])
    raw = jnp.asarray(np.concatenate([logits, means, log_scales]), jnp.float32)
    sigma = lambda v: 1.0 / (1.0 + np.exp(-v))
    pi = np.exp(logits) / np.exp(logits).sum()
    c, d = np.linspace(-1.0, 1.0, levels), 1.0 / (levels - 1)
    upper = np.where(np.arange(levels) == levels - 1, np.inf, c + d)
    lower = np.where(np.arange(levels) == 0, -np.inf, c - d)
    s = np.exp(log_scales)
    p = (pi * (sigma((upper[:, None] - means) / s) - sigma((lower[:, None] - means) / s))).sum(1)
    got = np.exp(np.asarray(outputs.level_log_probs("logistic_mix", raw, levels), np.float64))
    np.testing.assert_allclose(got, p, rtol=1e-5)


def test_a_sharp_logistic_puts_its_mass_on_its_level_without_underflow():
    """A component with the smallest scale centred on level 200 of 256: its bin holds
    sigma(d / s) - sigma(-d / s) of the mass (d = 1 / 255, s = e^-7: 0.973), and every level's
    log-probability is finite, far bins included (no log(0) from sigma(u) - sigma(l))."""
    levels = 256
    centre = 2 * 200 / (levels - 1) - 1
    raw = jnp.array([0.0, centre, outputs.MIN_LOG_SCALE])
    table = np.asarray(outputs.level_log_probs("logistic_mix", raw, levels))
    assert np.all(np.isfinite(table)) and np.argmax(table) == 200
    z = (1 / (levels - 1)) / math.exp(outputs.MIN_LOG_SCALE)
    assert math.exp(table[200]) == pytest.approx(math.tanh(z / 2), rel=1e-4)
    assert table[0] < -100 and table[199] < table[200] - 3


def test_draws_follow_the_tempered_conditional():
    """Frequencies of 40,000 draws match softmax(log p / T) for T = 1 and 0.5; T -> 0 gives the
    most likely level."""
    logits = jnp.array([0.0, 1.0, -0.5, 0.7])
    raw = jnp.broadcast_to(logits, (40_000, 4))
    for t in (1.0, 0.5):
        x = np.asarray(outputs.draw("categorical", jax.random.key(2), raw, t, 4), int)
        freq = np.bincount(x, minlength=4) / len(x)
        np.testing.assert_allclose(freq, np.asarray(jax.nn.softmax(logits / t)), atol=0.01)
    cold = outputs.draw("categorical", jax.random.key(3), raw[:100], 1e-4, 4)
    assert np.all(np.asarray(cold) == 1)
    b = np.asarray(outputs.draw("bernoulli", jax.random.key(4), jnp.full((40_000, 1), 0.8), 0.5, 2))
    assert set(np.unique(b)) <= {0.0, 1.0}
    assert np.mean(b) == pytest.approx(float(jax.nn.sigmoid(1.6)), abs=0.01)


@pytest.mark.parametrize("t", [0.0, -1.0, float("nan"), float("inf"), "1", True])
def test_bad_temperatures_are_named(t):
    assert outputs.check_temperature(t) is not None
    assert outputs.check_temperature(0.5) is None
