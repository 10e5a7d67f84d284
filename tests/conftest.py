"""Fixtures shared by every test folder."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest


def _numpy_init(model, *init_args, scale: float = 1.0, seed: int = 0):
    """Params with `model.init(key, *init_args)`'s shapes, drawn in numpy: kernels
    N(0, scale^2 / fan_in), biases N(0, scale^2 / 100). No compiled initialisers (each costs
    ~0.5 s of XLA compile on CPU); a large `scale` moves q(z|x) far from the posterior."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0), *init_args)

    def draw(leaf):
        fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 100
        return jnp.asarray(rng.normal(size=leaf.shape) * scale / np.sqrt(fan_in), jnp.float32)

    return jax.tree.map(draw, shapes)


@pytest.fixture(scope="session")
def numpy_init():
    return _numpy_init


@pytest.fixture
def refused(capsys):
    """``refused(argv, *fragments)``: the CLI exits 2 with one line on stderr holding each
    fragment; returns that line."""
    from gmzoo import cli

    def check(argv, *fragments):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        for f in fragments:
            assert f in err, err
        return err

    return check


@pytest.fixture
def no_compute(monkeypatch):
    """Fails the test if anything gets as far as building parameters."""
    from gmzoo.train import loop

    def boom(*a, **k):
        raise AssertionError("compute started before the input was validated")
    monkeypatch.setattr(loop, "init_state", boom)
