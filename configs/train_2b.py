"""CogVideoX-2b full fine-tuning (SAT recipe: lr 1e-5 constant after 100 warmup steps, clip 0.1 in SAT /
1.0 in diffusers finetune/, caption dropout 10 %, SNR shift 3.0 for the 2b discretisation).

Progressive stages (paper §2: low resolution first, then full resolution / length); override
``--set stages.0.steps=…`` to taste. Mesh: FSDP over every chip.
"""
from configs.train_config import CheckpointConfig, DataConfig, OptimizerConfig, StageConfig, TrainConfig

STAGES = (
    StageConfig(name="256px-17f", steps=2000, num_frames=17, height=256, width=384, lr=1e-5),
    StageConfig(name="480px-49f", steps=8000, num_frames=49, height=480, width=720, lr=1e-5),
)


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
        log_every=10,
    )
