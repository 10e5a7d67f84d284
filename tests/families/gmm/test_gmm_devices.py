"""EM with the batch sharded over 8 (simulated CPU) devices fits what one device fits: the
E-step's sufficient statistics are sums over the batch, and XLA reduces them across devices.

Checked twice in one subprocess (the devices exist only if ``XLA_FLAGS`` is set before jax is
imported): the pure ``em.fit`` on a batch placed with ``parallel.batch_sharding`` (every
covariance type; its compiled HLO holds an all-reduce), and ``gmzoo train gmm`` through the
spine on ``devices[:8]`` against ``devices[:1]`` (k-means++ init, dequantization draws, EM).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
TIMEOUT = 240  # seconds

_SCRIPT = r'''
import json, sys
import jax, jax.numpy as jnp, numpy as np
from gmzoo import config as cfglib, zoo
from gmzoo.families.gmm import em, kmeans
from gmzoo.train import parallel

out_dir = sys.argv[1]
assert jax.device_count() == 8, jax.devices()
rng = np.random.RandomState(0)
x = (rng.randn(800, 3) + 3.0 * rng.randint(3, size=(800, 1))).astype(np.float32)
fit = jax.jit(em.fit, static_argnums=(2, 3))
arrays, info = {}, {}
for ct in em.COVARIANCE_TYPES:
    p0 = kmeans.init_params(jax.random.key(0), jnp.asarray(x), 3, ct, num_steps=2)
    for n in (8, 1):
        mesh = parallel.data_mesh(jax.devices()[:n])
        xs = jax.device_put(x, parallel.batch_sharding(mesh, stacked=False))
        ps = jax.device_put(p0, parallel.replicated(mesh))
        if n == 8:
            info[ct] = {"all_reduce": "all-reduce" in fit.lower(ps, xs, ct, 6).compile().as_text(),
                        "x_devices": len(xs.sharding.device_set)}
        params, lls = fit(ps, xs, ct, 6)
        for k, v in params.items():
            arrays[f"{ct}/{n}/{k}"] = np.asarray(v)
        arrays[f"{ct}/{n}/lls"] = np.asarray(lls)

cfg = cfglib.override(zoo.get("gmm").default(), [
    "model.num_components=4", "model.noise_draws=2", "model.kmeans_steps=2", "train.steps=3",
    "train.batch_size=1432", "train.log_every=1", "train.checkpoint_every=3",
    "train.eval_every=0", "train.sample_every=0", "train.progress_bar=false"])
for n in (8, 1):
    state = zoo.train(cfg, f"{out_dir}/devices{n}", devices=jax.devices()[:n], verbose=False)
    info[f"spine{n}_devices"] = sorted({len(v.sharding.device_set) for v in jax.tree.leaves(state.params)})
    for k, v in state.params["mixture"].items():
        arrays[f"spine/{n}/{k}"] = np.asarray(v.addressable_shards[0].data)
np.savez(f"{out_dir}/arrays.npz", **arrays)
with open(f"{out_dir}/info.json", "w") as f:
    json.dump(info, f)
print("ok", flush=True)
'''


@pytest.fixture(scope="module")
def runs(tmp_path_factory, on_devices):
    tmp = tmp_path_factory.mktemp("gmm_devices")
    on_devices(["-c", _SCRIPT, str(tmp)], 8, TIMEOUT, REPO)
    with np.load(tmp / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    metrics = {n: [json.loads(l) for l in (tmp / f"devices{n}" / "metrics.jsonl").read_text().splitlines()]
               for n in (8, 1)}
    return arrays, json.loads((tmp / "info.json").read_text()), metrics


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_sharded_em_fits_what_one_device_fits(runs, covariance_type):
    arrays, info, _ = runs
    assert info[covariance_type] == {"all_reduce": True, "x_devices": 8}
    names = ("weights", "means", "precisions_cholesky", "lls")
    for name in names:
        a, b = arrays[f"{covariance_type}/8/{name}"], arrays[f"{covariance_type}/1/{name}"]
        # float32 sums reduced in another order: 1e-5 apart on entries of size 1 (tied, 6 steps)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=name)
    lls = arrays[f"{covariance_type}/8/lls"]
    assert lls[-1] > lls[0]  # EM moved, so the comparison is not of a fixed point


def test_gmm_trains_the_same_on_eight_devices_and_on_one(runs):
    arrays, info, metrics = runs
    assert info["spine8_devices"] == [8] and info["spine1_devices"] == [1]
    for name in ("weights", "means", "precisions_cholesky"):
        np.testing.assert_allclose(arrays[f"spine/8/{name}"], arrays[f"spine/1/{name}"],
                                   rtol=2e-3, atol=1e-4, err_msg=name)
    loss = {n: [r["loss"] for r in metrics[n] if r["split"] == "train"] for n in (8, 1)}
    assert len(loss[8]) == 3
    np.testing.assert_allclose(loss[8], loss[1], rtol=1e-5)
