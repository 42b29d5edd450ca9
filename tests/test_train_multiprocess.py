"""Two JAX processes on localhost (gloo, 4 CPU devices each) train one model together: both report
the same losses and params, and the checkpoint they wrote restores here on an 8-device mesh."""
import os
import sys
from types import SimpleNamespace

import jax
import numpy as np
import pytest

from cogvideox_jax.train.trainer import Trainer, params_checksum
from cogvideox_jax.train.cli_train import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "launch"))
import local_multiprocess  # noqa: E402

SETS = ["mesh=data=2,fsdp=4", "stages.0.steps=4", "stages.1.steps=0", "stages.0.height=32", "stages.0.width=32",
        "checkpoint.every_steps=4"]


@pytest.mark.slow
def test_two_processes_train_together_and_checkpoint_restores(tmp_path):
    config = os.path.join(REPO, "configs", "train_tiny.py")
    args = SimpleNamespace(config=config, workdir=str(tmp_path), overrides=SETS, num_processes=2,
                           devices_per_process=4, max_steps=None)
    r0, r1 = local_multiprocess.launch(args, timeout=400)
    assert (r0["process_id"], r1["process_id"]) == (0, 1)
    assert r0["num_processes"] == 2 and r0["devices"] == 8
    assert len(r0["losses"]) == 4 and r0["losses"] == r1["losses"]
    assert np.isfinite(list(r0["losses"].values())).all()
    assert r0["params_checksum"] == r1["params_checksum"]
    # the jointly written checkpoint restores in this single process, on another mesh shape
    cfg = load_config(config, SETS + ["mesh=fsdp=8"])
    tr = Trainer(cfg, str(tmp_path))
    tr.restore()
    assert tr.restored_step == 4
    assert params_checksum(tr.state.params) == r0["params_checksum"]
    assert jax.device_count() == 8
    tr.close()
