"""CogVideoX-2b full fine-tuning (SAT recipe: lr 1e-5 constant after 100 warmup steps, clip 0.1 in SAT /
1.0 in diffusers finetune/, caption dropout 10 %, SNR shift 3.0 for the 2b discretisation).

Progressive stages (paper §2: low resolution first, then full resolution / length); override
``--set stages.0.steps=…`` to taste. Mesh: FSDP over every chip.
"""
from configs.train_config import (CheckpointConfig, DataConfig, OptimizerConfig, StageConfig, TrainConfig,
                                  ValidationConfig)

STAGES = (
    StageConfig(name="256px-17f", steps=2000, num_frames=17, height=256, width=384, lr=1e-5),
    StageConfig(name="480px-49f", steps=8000, num_frames=49, height=480, width=720, lr=1e-5),
)
# sampled from the current weights every 500 steps at the stage's size (needs --init PATH or data.pretrained
# for the VAE / T5; --set validation.every_steps=0 turns it off)
VALIDATION = ValidationConfig(every_steps=500, steps=50, guidance_scale=6.0, prompts=(
    "A golden retriever runs across a sunlit meadow, its fur glowing in the warm afternoon light.",
    "A red vintage car drives along a winding coastal road at sunset, waves breaking on the rocks below.",
))


def get_config() -> TrainConfig:
    return TrainConfig(
        model="cogvideox-2b",
        mesh="fsdp=-1",
        batch_size=32,
        snr_shift_scale=3.0,
        text_dropout=0.1,
        ema_decay=0.0,
        param_dtype="float32",
        dtype="bfloat16",
        optimizer=OptimizerConfig(lr=1e-5, warmup_steps=100, grad_clip=1.0),
        stages=STAGES,
        checkpoint=CheckpointConfig(directory="checkpoints", every_steps=500, keep_last=3, keep_best=1),
        data=DataConfig(kind="precomputed"),
        validation=VALIDATION,
        log_every=10,
    )
