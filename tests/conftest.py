"""Fixtures shared by every test folder, and one compilation cache for the whole run."""

import os
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

# Most of the suite's time is XLA compiling the same tiny programs again: a resumed run rebuilds
# its train step, many tests train the same tiny config, and a new closure misses jit's
# in-memory cache even when its program is identical. One persistent cache per test run (shared
# by the xdist workers and the subprocesses they start, removed at the end; never reused across
# runs, so a run costs what it costs on a fresh machine) serves those from disk. A user's own
# JAX_COMPILATION_CACHE_DIR is used as it is and left in place.
_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
# Much of the rest is XLA optimising programs that then run on 16 examples for two steps: tests
# compile with JAX's `jax_disable_most_optimizations` (the same programs, less optimisation
# work; a third less CPU over the model-table contract rows of ddpm, cascaded, conv_vae and
# dcgan: 156 -> 103 s). Tests that run real compute (thousands of sampler steps, a classifier
# trained to accuracy) are marked `optimized` and compile as usual (unoptimised, the diffusion
# sampler, solver, SDE and classifier tests took 224 s of CPU instead of 113 s). Subprocesses
# inherit the setting through the environment; a user's own JAX_DISABLE_MOST_OPTIMIZATIONS wins.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
_UNOPTIMIZED = os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"].lower() in ("1", "true")
jax.config.update("jax_disable_most_optimizations", _UNOPTIMIZED)


@pytest.fixture(autouse=True)
def _xla_optimisation(request, monkeypatch):
    """Full XLA optimisation for tests marked ``optimized`` (and the subprocesses they start),
    the suite's default otherwise."""
    optimized = request.node.get_closest_marker("optimized") is not None
    jax.config.update("jax_disable_most_optimizations", _UNOPTIMIZED and not optimized)
    if optimized:
        monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "0")
    yield


# Many tests evaluate a tiny run on the digits, each retraining the same deterministic feature
# net for FD/KID in its own workdir: one directory of feature nets per test run serves them all
# (always the suite's own, removed at the end: a user's GMZOO_FEATURE_NET_DIR is not written).
_FEATURE_ENV = "GMZOO_FEATURE_NET_DIR"


def pytest_configure(config):
    if not hasattr(config, "workerinput") and not os.environ.get(_CACHE_ENV):
        config._gmzoo_jax_cache = tempfile.mkdtemp(prefix="gmzoo-test-jax-cache-")
        os.environ[_CACHE_ENV] = config._gmzoo_jax_cache  # xdist workers inherit it
    if not hasattr(config, "workerinput"):
        config._gmzoo_feature_nets = tempfile.mkdtemp(prefix="gmzoo-test-feature-nets-")
        os.environ[_FEATURE_ENV] = config._gmzoo_feature_nets
    if os.environ.get(_CACHE_ENV):
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE_ENV])
        jax.config.update("jax_persistent_cache_min_compile_time_secs",
                          float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def pytest_unconfigure(config):
    for made in ("_gmzoo_jax_cache", "_gmzoo_feature_nets"):
        if getattr(config, made, None):
            shutil.rmtree(getattr(config, made), ignore_errors=True)


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
    monkeypatch.setattr(loop, "restore_target", boom)


def _on_devices(argv: list[str], n: int, timeout: float, cwd):
    """``python argv`` in a subprocess that sees ``n`` simulated CPU devices (they exist only if
    ``XLA_FLAGS`` is set before jax is imported) and imports gmzoo from this checkout; a time-out
    or a non-zero exit fails the test with the process's last output."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}").strip()
    env.pop("JAX_NUM_CPU_DEVICES", None)
    env["PYTHONPATH"] = os.pathsep.join([str(cwd), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    try:
        proc = subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:  # subprocess.run has killed it
        pytest.fail(f"{n}-device run timed out after {timeout}s:\n{(e.stderr or b'')[-3000:]!r}")
    if proc.returncode != 0:
        pytest.fail(f"{n}-device run failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                    f"{proc.stderr[-5000:]}")
    return proc


@pytest.fixture(scope="session")
def on_devices():
    """``on_devices(argv, n, timeout, cwd)``: see :func:`_on_devices`."""
    return _on_devices
