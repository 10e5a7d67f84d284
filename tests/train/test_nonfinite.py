"""A NaN or Inf stops training with a message naming the step and the last good checkpoint,
which stays intact."""

import os

import jax
import numpy as np
import pytest

from gmzoo.train.loop import NonFiniteError
from gmzoo.zoo import load_run, train


def test_divergence_stops_with_step_and_intact_checkpoint(tmp_path, tiny):
    # Adam moves every weight by ~lr on the first step, so lr = 1e30 overflows the logits.
    cfg = tiny(extra=["optim.learning_rate=1e30", "optim.warmup_steps=0",
                      "optim.schedule=constant", "train.steps=6", "train.log_every=1",
                      "train.checkpoint_every=1"])
    workdir = str(tmp_path / "run")
    with pytest.raises(NonFiniteError) as e:
        train(cfg, workdir, verbose=False)
    msg = str(e.value)
    assert "non-finite loss or gradient at step" in msg
    bad_step = int(msg.split("at step ")[1].split(";")[0])
    assert 1 <= bad_step <= 6
    ckpts = sorted(int(n) for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit())
    if bad_step == 1:
        assert not ckpts and "no checkpoint was written yet" in msg
    else:
        assert ckpts[-1] == bad_step - 1, (ckpts, msg)
        assert f"last good checkpoint is step {bad_step - 1}" in msg
        _, state = load_run(workdir)
        assert int(state.step) == bad_step - 1
        leaves = jax.tree.leaves(jax.device_get(state.params))
        assert all(np.all(np.isfinite(x)) for x in leaves)
