"""LoRA fine-tuning of the 1_5 model: rank 128, alpha 64 on to_q/to_k/to_v/to_out (diffusers finetune/
defaults), lr 2e-4 is the finetune/ LoRA default; one stage at the model's native size."""
import dataclasses

from configs.train_config import LoraConfig
from configs.train_1_5 import get_config as _full


def get_config():
    cfg = _full()
    stage = dataclasses.replace(cfg.stages[-1], steps=2000, lr=2e-4)
    return dataclasses.replace(cfg, lora=LoraConfig(rank=128, alpha=64.0), stages=(stage,), text_dropout=0.0,
                               optimizer=dataclasses.replace(cfg.optimizer, lr=2e-4, grad_clip=1.0),
                               batch_size=8)
