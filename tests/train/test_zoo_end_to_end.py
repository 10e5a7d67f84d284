"""Spine options on a tiny VAE: bfloat16 compute and several steps per compiled call (every row
of the model table is trained, sampled and resumed by tests/test_model_table.py)."""

import jax
import numpy as np

from gmzoo.zoo import train

def test_bfloat16_compute_trains(tiny, tmp_path):
    cfg = tiny("vae", ["train.compute_dtype=bfloat16", "train.steps=4", "train.log_every=2",
                       "train.checkpoint_every=4"])
    state = train(cfg, str(tmp_path / "bf16"), verbose=False)
    leaves = jax.tree.leaves(jax.device_get(state.params))
    assert all(x.dtype == np.float32 and np.all(np.isfinite(x)) for x in leaves)


def test_steps_per_call_matches_one_step_per_call(tiny, tmp_path):
    one = train(tiny("vae", ["train.steps=4", "train.checkpoint_every=4"]),
                str(tmp_path / "one"), verbose=False)
    four = train(tiny("vae", ["train.steps=4", "train.steps_per_call=4",
                              "train.checkpoint_every=4"]), str(tmp_path / "four"), verbose=False)
    for a, b in zip(jax.tree.leaves(jax.device_get(one.params)),
                    jax.tree.leaves(jax.device_get(four.params))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
