"""Faults in training (issue #50): a non-finite run stops with a clear message and never checkpoints
non-finite values or lets ``keep_best`` drop the finite checkpoint; a damaged newest checkpoint is moved
aside and the one before it restored; the README's tiny command runs on a one-device CPU; metrics after a
resume have no duplicate steps."""
import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs.train_config import CheckpointConfig, OptimizerConfig, StageConfig
from cogvideox_jax.cli import main
from cogvideox_jax.train.checkpointing import Checkpointer
from cogvideox_jax.train.trainer import NonFiniteTrainingError, Trainer
from tests.test_train_loop import tiny_cfg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGE = StageConfig(steps=8, num_frames=5, height=16, width=16)


def finite(tree) -> bool:
    return all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(jax.device_get(tree)))


def test_nonfinite_steps_are_not_applied_and_stop_the_run(tmp_path, capsys):
    cfg = tiny_cfg(optimizer=OptimizerConfig(lr=1e30, warmup_steps=1), stages=(STAGE,), ema_decay=0.9,
                   checkpoint=CheckpointConfig(every_steps=1, keep_last=1, keep_best=1, async_save=False))
    tr = Trainer(cfg, str(tmp_path), progress=False)
    with pytest.raises(NonFiniteTrainingError, match=r"stopped at step \d+.*3 steps in a row"):
        tr.fit()
    tr.close()
    lines = [json.loads(x) for x in open(tmp_path / "logs" / "metrics.jsonl")]
    bad = [r["step"] for r in lines if not np.isfinite(r["loss"]) or not np.isfinite(r["grad_norm"])]
    assert len(bad) == 3 and bad == list(range(bad[0], bad[0] + 3))
    assert lines[-1]["nonfinite_steps"] == 3
    # every checkpoint left is finite and was written at a finite loss; keep_best kept its best
    ck = Checkpointer(str(tmp_path / "checkpoints"))
    steps = ck.all_steps()
    assert steps and max(steps) < bad[0]
    assert all(np.isfinite(ck.read_meta(s)["metrics"]["loss"]) for s in steps)
    ck.close()
    tr2 = Trainer(cfg, str(tmp_path), progress=False)
    tr2.restore()
    assert tr2.restored_step == max(steps) and finite((tr2.state.params, tr2.state.ema))
    tr2.close()
    # the CLI exits non-zero with the message (no traceback)
    capsys.readouterr()
    rc = main(["train", "--config", os.path.join(REPO, "configs", "train_tiny.py"), "--workdir", str(tmp_path / "cli"),
               "--set", "optimizer.lr=1e30", "--set", "stages.0.steps=8", "--set", "stages.1.steps=0",
               "--set", "stages.0.height=16", "--set", "stages.0.width=16", "--set", "checkpoint.every_steps=1"])
    assert rc == 1 and "not finite" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["array_file", "metadata"])
def test_damaged_newest_checkpoint_falls_back(tmp_path, capsys, damage):
    cfg = tiny_cfg(stages=(dataclasses.replace(STAGE, steps=4),),
                   checkpoint=CheckpointConfig(every_steps=2, keep_last=3, keep_best=0, async_save=False))
    tr = Trainer(cfg, str(tmp_path), progress=False)
    tr.fit()
    tr.close()
    state = tmp_path / "checkpoints" / "4" / "state"
    if damage == "array_file":
        victim = max((p for p in state.rglob("*") if p.is_file() and "ocdbt.process" in str(p)), key=lambda p: p.stat().st_size)
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
    else:
        (state / "_METADATA").write_text("{ not json")
    capsys.readouterr()
    tr = Trainer(cfg, str(tmp_path), progress=False)
    tr.restore()
    assert tr.restored_step == 2
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "damaged" in line]
    assert len(notes) == 1 and "step 4" in notes[0] and "damaged-4-" in notes[0]
    assert len(err.splitlines()) < 5  # one line, not a TensorStore dump
    aside = [p for p in os.listdir(tmp_path / "checkpoints") if p.startswith("damaged-4-")]
    assert len(aside) == 1 and sorted(os.listdir(tmp_path / "checkpoints" / aside[0]))  # kept, not deleted
    tr.close()
    # none intact: an error naming the folder
    for step in ("2",):
        (tmp_path / "checkpoints" / step / "state" / "_METADATA").write_text("{")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "checkpoints")):
        Trainer(cfg, str(tmp_path), progress=False).restore()


def test_a_checkpoint_that_does_not_fit_the_model_is_not_damage(tmp_path):
    cfg = tiny_cfg(stages=(dataclasses.replace(STAGE, steps=2),),
                   checkpoint=CheckpointConfig(every_steps=2, keep_last=3, keep_best=0, async_save=False))
    Trainer(cfg, str(tmp_path), progress=False).fit()
    with pytest.raises(Exception) as e:
        Trainer(dataclasses.replace(cfg, model="tiny-5b-i2v"), str(tmp_path), progress=False).restore()
    assert "damaged" not in str(e.value)
    assert os.listdir(tmp_path / "checkpoints") == ["2"]


def test_metrics_after_resume_have_no_duplicate_steps(tmp_path):
    cfg = tiny_cfg(stages=(dataclasses.replace(STAGE, steps=5),),
                   checkpoint=CheckpointConfig(every_steps=2, keep_last=3, keep_best=0, async_save=False))
    tr = Trainer(cfg, str(tmp_path), progress=False)
    tr.fit(max_steps=3)  # steps 1-3 logged, the checkpoint at 2: step 3 is redone after the restart
    tr.close()
    tr = Trainer(cfg, str(tmp_path), progress=False)
    tr.fit()
    tr.close()
    steps = [json.loads(x)["step"] for x in open(tmp_path / "logs" / "metrics.jsonl")]
    assert steps == [1, 2, 3, 4, 5]


def _plain_env():
    """The environment a user's shell has: no forced host device count, no platform pin."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env["PYTHONPATH"] = REPO
    return env


def test_readme_tiny_training_runs_on_one_cpu_device(tmp_path):
    cmd = [sys.executable, "-m", "cogvideox_jax.cli", "train", "--config", "configs/train_tiny.py",
           "--workdir", str(tmp_path / "tiny")]
    proc = subprocess.run(cmd, cwd=REPO, env=_plain_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "using 'data=1,fsdp=1'" in proc.stdout
    assert sorted(os.listdir(tmp_path / "tiny" / "checkpoints"))
    # --local-devices works on its own (no JAX_PLATFORMS=cpu): the configured data=2 mesh fits
    proc = subprocess.run(cmd[:-1] + [str(tmp_path / "two"), "--local-devices", "2", "--max-steps", "1"], cwd=REPO,
                          env=_plain_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "note: mesh" not in proc.stdout
    manifest = json.load(open(tmp_path / "two" / "run.json"))
    assert manifest["config"]["mesh"] == "data=2,fsdp=-1"


def test_skipped_videos_are_counted_in_the_metrics(tmp_path):
    """Unreadable videos are skipped and their count is a metric (``data_skipped``), not only a log line."""
    from configs.train_config import DataConfig
    from cogvideox_jax.train.model_factory import ModelSpec, StandInVideoModel
    from cogvideox_jax.train.video_latents import video_data_factory
    from cogvideox_jax_oracles.data_video_files import write_folder

    data = tmp_path / "data"
    write_folder(data, [dict(num_frames=12, height=32, width=32, fps=8.0, noise=True) for _ in range(8)]
                 + [dict(num_frames=12, height=32, width=32, fps=8.0, corrupt="random")])

    def encode_video(video):  # stand-in encoders: the data path, not the VAE, is under test
        return np.zeros((video.shape[0], 3, 4, 4, 4), np.float32)

    def encode_text(prompts):
        return np.zeros((len(prompts), 8, 16), np.float32)

    def factory(cfg, stage_index, lat_shape, text_shape, batch_size):
        return video_data_factory(cfg, stage_index, lat_shape, text_shape, batch_size,
                                  encoders=(encode_video, encode_text))

    module = StandInVideoModel(channels=4, text_dim=16)
    spec = ModelSpec(module, 4, 16, 2, 1, module.layers, module.dim, 2, module.dim)
    cfg = tiny_cfg(model="standin", batch_size=8, data=DataConfig(kind="videos", path=str(data)),
                   stages=(StageConfig(steps=2, num_frames=9, height=32, width=32),))
    tr = Trainer(cfg, str(tmp_path / "run"), model_spec=spec, data_factory=factory, progress=False)
    records = tr.fit()
    tr.close()
    assert [r["data_skipped"] for r in records] == [1, 1]
    assert json.loads(open(tmp_path / "run" / "logs" / "metrics.jsonl").readlines()[-1])["data_skipped"] == 1
