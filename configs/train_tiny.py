"""Tiny training config for tests and smoke runs: seconds per step on CPU."""
from configs.train_config import CheckpointConfig, DataConfig, OptimizerConfig, StageConfig, TrainConfig


def get_config(model: str = "tiny-5b") -> TrainConfig:
    return TrainConfig(
        model=model,
        mesh="data=2,fsdp=-1",
        batch_size=8,
        seed=0,
        text_len=8,
        text_dropout=0.1,
        ema_decay=0.99,
        optimizer=OptimizerConfig(lr=1e-3, warmup_steps=5, grad_clip=1.0),
        stages=(StageConfig(name="low-res", steps=20, num_frames=9, height=64, width=64),
                StageConfig(name="high-res", steps=10, num_frames=9, height=96, width=96, lr=5e-4)),
        checkpoint=CheckpointConfig(directory="checkpoints", every_steps=5, keep_last=2, keep_best=1),
        data=DataConfig(kind="synthetic", num_synthetic=16),
        log_every=1,
    )
