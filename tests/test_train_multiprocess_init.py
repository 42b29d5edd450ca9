"""Fine-tuning on two JAX processes (jax.distributed on loopback, 4 CPU devices each) from `--init` a
diffusers folder: each process reads only its devices' slices of the safetensors weights, and the run's
losses and final weights are those of one process with all 8 devices initialised from a `convert`
checkpoint of the same folder (orbax, also shard by shard)."""
import os
import sys
from types import SimpleNamespace

import numpy as np

from cogvideox_jax.cli import main
from cogvideox_jax_oracles.pipeline_oracle import make_pipeline_folder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "launch"))
import local_multiprocess  # noqa: E402


def test_two_processes_finetune_from_init_like_one(tmp_path):
    folder, _ = make_pipeline_folder(str(tmp_path), "5b")
    ckpt = str(tmp_path / "ckpt")
    assert main(["convert", "--diffusers", folder, "--out", ckpt, "--scan-layers"]) == 0
    sets = ["model=auto", "mesh=data=2,fsdp=4", "text_len=226", "stages.0.steps=3", "stages.1.steps=0",
            "stages.0.height=16", "stages.0.width=16", "stages.0.num_frames=5", "checkpoint.every_steps=3"]
    config = os.path.join(REPO, "configs", "train_tiny.py")
    runs = {}
    for n, devices, init in ((2, 4, folder), (1, 8, ckpt)):
        args = SimpleNamespace(config=config, workdir=str(tmp_path / f"run{n}"), overrides=sets + [f"init_from={init}"],
                               num_processes=n, devices_per_process=devices, max_steps=None)
        runs[n] = local_multiprocess.launch(args, timeout=500)
    r0, r1 = runs[2]
    (single,) = runs[1]
    assert r0["num_processes"] == 2 and r0["devices"] == single["devices"] == 8
    assert r0["init_reads_shards"] and r1["init_reads_shards"] and single["init_reads_shards"]
    assert r0["losses"] == r1["losses"] and len(r0["losses"]) == 3
    steps = sorted(r0["losses"])
    np.testing.assert_allclose([r0["losses"][s] for s in steps], [single["losses"][s] for s in steps], rtol=1e-5)
    np.testing.assert_allclose(r0["params_checksum"], single["params_checksum"], rtol=1e-6)
