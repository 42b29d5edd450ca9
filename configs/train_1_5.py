"""CogVideoX1.5-5B full fine-tuning: 81 frames at 768×1360 (21 latent frames, patch_t 2), after a
lower-resolution stage."""
import dataclasses

from configs.train_config import StageConfig
from configs.train_2b import get_config as _base

STAGES = (
    StageConfig(name="480px-49f", steps=4000, num_frames=49, height=480, width=848, lr=1e-5),
    StageConfig(name="768px-81f", steps=6000, num_frames=81, height=768, width=1360, lr=1e-5),
)


def get_config():
    cfg = _base()
    return dataclasses.replace(cfg, model="cogvideox1.5-5b", snr_shift_scale=1.0, stages=STAGES,
                               text_len=226, batch_size=16)
