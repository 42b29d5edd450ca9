"""CogVideoX-5b full fine-tuning (SNR shift 1.0, RoPE; FSDP + sequence parallel for 13×60×90 latents)."""
import dataclasses

from configs.train_2b import get_config as _base


def get_config():
    cfg = _base()
    return dataclasses.replace(cfg, model="cogvideox-5b", snr_shift_scale=1.0, mesh="fsdp=-1,sequence=1",
                               validation=dataclasses.replace(cfg.validation, use_dynamic_cfg=True))
