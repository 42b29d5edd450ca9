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


@pytest.mark.slow
def test_two_processes_train_on_process_local_latent_cache_batches(tmp_path):
    """Each process reads only its shard of a latent cache (grain ShardByJaxProcess) and feeds its
    rows with make_array_from_process_local_data; both processes see the same global step."""
    from cogvideox_jax.data.latent_cache import LatentCacheWriter

    cache = str(tmp_path / "cache")
    rng = np.random.default_rng(0)
    with LatentCacheWriter(cache, num_shards=2, metadata={"scaling_factor": 0.7}) as w:
        for i in range(16):
            w.write(latent_mean=rng.standard_normal((3, 4, 4, 4)).astype(np.float32),
                    latent_logvar=np.full((3, 4, 4, 4), -4.0, np.float32),
                    text_emb=rng.standard_normal((8, 32)).astype(np.float32), prompt=f"p{i}", video="")
    sets = SETS + ["data.kind=latent_cache", f"data.path={cache}"]
    args = SimpleNamespace(config=os.path.join(REPO, "configs", "train_tiny.py"), workdir=str(tmp_path / "run"),
                           overrides=sets, num_processes=2, devices_per_process=4, max_steps=None)
    r0, r1 = local_multiprocess.launch(args, timeout=400)
    assert len(r0["losses"]) == 4 and r0["losses"] == r1["losses"]
    assert np.isfinite(list(r0["losses"].values())).all()
    assert r0["params_checksum"] == r1["params_checksum"]
