"""Cloud paths: a fine-tune whose workdir, ``--init`` pipeline and latent cache are all ``gs://`` URLs,
run against a local GCS stand-in (``tests/gcs_standin.py``): checkpoints, logs, TensorBoard, validation
videos and the manifest land in the bucket, the run resumes from there, ``export`` reads it and writes
to the bucket, and no local ``gs:`` folder is ever created."""
import json
import os

import numpy as np
import pytest

from configs.train_config import (CheckpointConfig, DataConfig, OptimizerConfig, StageConfig, TrainConfig,
                                  ValidationConfig)


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    from tests.gcs_standin import fake_gcs

    with fake_gcs(str(tmp_path_factory.mktemp("gcs"))) as bucket:
        yield bucket


def test_finetune_with_everything_on_gcs(gcs, tmp_path, monkeypatch):
    from etils import epath

    from cogvideox_jax import paths
    from cogvideox_jax.cli import main
    from cogvideox_jax.data.latent_cache import LatentCacheWriter
    from cogvideox_jax.pipeline import CogVideoXPipeline
    from cogvideox_jax.train.trainer import Trainer
    from cogvideox_jax_oracles.pipeline_oracle import make_pipeline_folder

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COGVIDEOX_JAX_CACHE", str(tmp_path / "cache"))
    folder, _ = make_pipeline_folder(str(tmp_path / "src"), "5b")
    paths.upload_tree(folder, f"{gcs}/models/pipe")
    rng = np.random.default_rng(0)
    local_cache = str(tmp_path / "src" / "latents")
    with LatentCacheWriter(local_cache, num_shards=2, metadata={"scaling_factor": 0.7}) as w:
        for i in range(8):
            w.write(latent_mean=rng.standard_normal((2, 2, 2, 4)).astype(np.float32),
                    latent_logvar=np.full((2, 2, 2, 4), -4.0, np.float32),
                    text_emb=rng.standard_normal((226, 32)).astype(np.float32), prompt=f"p{i}", video="")
    paths.upload_tree(local_cache, f"{gcs}/data/latents")

    run = f"{gcs}/runs/ft"
    cfg = TrainConfig(model="auto", init_from=f"{gcs}/models/pipe", mesh="data=2,fsdp=4", batch_size=8, text_len=226,
                      text_dropout=0.0, optimizer=OptimizerConfig(lr=1e-3, warmup_steps=1),
                      stages=(StageConfig(steps=4, num_frames=5, height=16, width=16),),
                      checkpoint=CheckpointConfig(every_steps=2, keep_last=3, keep_best=1, async_save=True),
                      data=DataConfig(kind="latent_cache", path=f"{gcs}/data/latents"), log_every=1,
                      validation=ValidationConfig(every_steps=2, prompts=("a fox",), steps=1, num_frames=9, height=32,
                                                  width=48))
    tr = Trainer(cfg, run, progress=False)
    tr.fit(max_steps=2)
    tr.close()
    tr = Trainer(cfg, run, progress=False)  # resumes from the bucket
    records = tr.fit()
    tr.close()
    assert tr.restored_step == 2 and [r["step"] for r in records] == [3, 4]
    root = epath.Path(run)
    assert sorted(p.name for p in (root / "checkpoints").iterdir() if p.name.isdigit()) == ["2", "4"]
    assert json.loads((root / "run.json").read_text())["init"]["path"] == f"{gcs}/models/pipe"
    steps = [json.loads(x)["step"] for x in (root / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [s for s in steps] == [1, 2, 2, 3, 4, 4]  # steps and the two validation events, once each
    assert list((root / "logs").glob("events.out.tfevents.*"))
    assert (root / "validation" / "step_4" / "0.mp4").exists()

    assert main(["export", "--train-workdir", run, "--checkpoint-out", f"{gcs}/exports/ckpt",
                 "--diffusers-out", str(tmp_path / "diffusers")]) == 0
    assert (epath.Path(gcs) / "exports" / "ckpt" / "cogvideox_jax.json").exists()
    assert os.path.exists(tmp_path / "diffusers" / "transformer" / "diffusion_pytorch_model.safetensors")
    pipe = CogVideoXPipeline.from_pretrained(f"{gcs}/exports/ckpt")
    video = pipe("a fox", num_frames=9, height=32, width=48, num_inference_steps=1, progress=False)
    assert video.shape == (1, 9, 32, 48, 3) and np.isfinite(video).all()
    stray = [str(p) for p in tmp_path.rglob("gs:")] + [p for p in os.listdir(tmp_path) if p.startswith("gs")]
    assert not stray, stray
