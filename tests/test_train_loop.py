"""Training loop on a tiny model: loss goes down, gradient accumulation is exact, EMA tracks params,
metrics are logged (JSONL)."""
import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.train_config import CheckpointConfig, DataConfig, OptimizerConfig, StageConfig, TrainConfig
from cogvideox_jax.train.trainer import Trainer, latent_shape, stage_at
from cogvideox_jax.train.train_step import StepOptions, make_loss_and_grads

MODEL = os.environ.get("COGVIDEOX_TRAIN_TEST_MODEL", "tiny-5b")  # the real tiny transformer (RoPE)


def tiny_cfg(**kw):
    base = TrainConfig(model=MODEL, mesh="data=2,fsdp=4", batch_size=8, text_len=8, text_dropout=0.0,
                       optimizer=OptimizerConfig(lr=2e-3, warmup_steps=3),
                       stages=(StageConfig(steps=30, num_frames=5, height=32, width=32),),
                       checkpoint=CheckpointConfig(every_steps=1000, keep_last=1, keep_best=0, async_save=False),
                       data=DataConfig(num_synthetic=8), log_every=1)
    return dataclasses.replace(base, **kw)


def test_tiny_model_loss_decreases(tmp_path, capsys):
    tr = Trainer(tiny_cfg(ema_decay=0.9), str(tmp_path), progress=False)
    recs = tr.fit()
    tr.close()
    out, err = capsys.readouterr()
    assert "step 30" in out and "train:" not in err  # metric lines without the progress bar
    losses = np.array([r["loss"] for r in recs])
    assert len(losses) == 30 and np.isfinite(losses).all()
    assert losses[-8:].mean() < 0.6 * losses[:5].mean(), losses
    lines = [json.loads(x) for x in open(tmp_path / "logs" / "metrics.jsonl")]
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "step_time_s", "tflops_per_s"} <= set(lines[-1])
    # EMA differs from the params but stays close to them
    p = jax.tree_util.tree_leaves(jax.device_get(tr.state.params))
    e = jax.tree_util.tree_leaves(jax.device_get(tr.state.ema))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(p, e))
    assert 0 < diff < 1.0


@pytest.mark.slow  # two extra compiles (~1 min idle)
def test_grad_accumulation_matches_full_batch(tmp_path):
    """The scan over micro-batches gives the full-batch loss and gradients (same timesteps and noise)."""
    cfg = tiny_cfg(batch_size=16, data=DataConfig(num_synthetic=16),
                   stages=(StageConfig(steps=1, num_frames=5, height=16, width=16),))
    tr = Trainer(cfg, str(tmp_path))
    state = tr.build_state()
    batch = next(tr._stage(0, 0, None).data)
    out = []
    for accum in (1, 2):
        opts = StepOptions(dataclasses.replace(cfg, optimizer=OptimizerConfig(grad_accum_steps=accum)), tr.alphas_cumprod)
        fn = jax.jit(make_loss_and_grads(tr.spec.module, opts, 8))
        with jax.set_mesh(tr.mesh):
            out.append(jax.device_get(fn(state, batch)))
    tr.close()
    np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-5)
    np.testing.assert_array_equal(out[0][2], out[1][2])
    for a, b in zip(jax.tree_util.tree_leaves(out[0][1]), jax.tree_util.tree_leaves(out[1][1])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


def test_stage_bookkeeping():
    stages = (StageConfig(steps=10, num_frames=49, height=480, width=720), StageConfig(steps=5, num_frames=81))
    assert latent_shape(stages[0], 16) == (13, 60, 90, 16)
    assert latent_shape(stages[1], 16)[0] == 21
    assert stage_at(stages, 0) == (0, 0) and stage_at(stages, 9) == (0, 0) and stage_at(stages, 10) == (1, 10)
    assert stage_at(stages, 99) == (1, 10)


def test_loss_weights_reach_the_loss(tmp_path):
    """A Trainer's ``loss_weights(x0)`` weights the jitted step's v-loss per element: same batch, timesteps
    and noise, weight 2 everywhere -> exactly twice the loss."""
    cfg = tiny_cfg(stages=(StageConfig(steps=1, num_frames=5, height=16, width=16),))
    tr = Trainer(cfg, str(tmp_path), loss_weights=lambda x0: 2.0 * jnp.ones(x0.shape[:-1] + (1,), jnp.float32))
    state = tr.build_state()
    batch = next(tr._stage(0, 0, None).data)
    losses = []
    for opts in (dataclasses.replace(tr.step_options(), loss_weights=None), tr.step_options()):
        fn = jax.jit(make_loss_and_grads(tr.spec.module, opts, 8))
        with jax.set_mesh(tr.mesh):
            losses.append(float(jax.device_get(fn(state, batch))[0]))
    tr.close()
    assert losses[1] == 2 * losses[0], losses


def test_timestep_density_reaches_the_step(tmp_path):
    """TrainConfig.timestep_density is what the jitted step samples: a logit-normal density narrowed
    around t ≈ 18 (logit mean −4) keeps every drawn t far below the uniform draw's range."""
    cfg = tiny_cfg(stages=(StageConfig(steps=2, num_frames=5, height=16, width=16),),
                   timestep_density="logit_normal", timestep_logit_mean=-4.0, timestep_logit_std=0.1)
    tr = Trainer(cfg, str(tmp_path), progress=False)
    recs = tr.fit()
    tr.close()
    assert all(5 <= r["t_min"] <= r["t_max"] <= 40 for r in recs), recs
    with pytest.raises(ValueError, match="unknown timestep density"):
        Trainer(tiny_cfg(timestep_density="cosine"), str(tmp_path / "bad"))
