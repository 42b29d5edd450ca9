"""Scheduler config (diffusers ``scheduler/scheduler_config.json`` of the CogVideoX schedulers)."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

SCHEDULER_KINDS = {"CogVideoXDDIMScheduler": "ddim", "CogVideoXDPMScheduler": "dpm"}


@dataclasses.dataclass(frozen=True)
class SchedulerConfig:
    kind: str = "ddim"                      # "ddim" (CogVideoXDDIMScheduler) or "dpm" (CogVideoXDPMScheduler)
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    clip_sample: bool = False
    set_alpha_to_one: bool = True
    steps_offset: int = 0
    prediction_type: str = "v_prediction"
    timestep_spacing: str = "trailing"
    rescale_betas_zero_snr: bool = True
    snr_shift_scale: float = 3.0

    def __post_init__(self):
        if self.kind not in ("ddim", "dpm"):
            raise ValueError(f"scheduler kind must be 'ddim' or 'dpm', got {self.kind!r}")
        if self.timestep_spacing not in ("linspace", "leading", "trailing"):
            raise ValueError(f"timestep_spacing {self.timestep_spacing!r}: use linspace, leading or trailing")
        if self.beta_schedule not in ("scaled_linear", "linear"):
            raise ValueError(f"beta_schedule {self.beta_schedule!r} is not supported (scaled_linear, linear)")
        if self.prediction_type not in ("v_prediction", "epsilon", "sample"):
            raise ValueError(f"prediction_type {self.prediction_type!r} is not supported")
        if self.clip_sample:
            raise ValueError("clip_sample=True is not supported (CogVideoX uses False)")

    @classmethod
    def from_diffusers_config(cls, config: Mapping[str, Any]) -> "SchedulerConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in config.items() if k in names}
        if config.get("trained_betas") is not None:
            raise ValueError("trained_betas is not supported (CogVideoX uses the scaled_linear schedule)")
        class_name = config.get("_class_name")
        if class_name is not None:
            if class_name not in SCHEDULER_KINDS:
                raise ValueError(f"unsupported scheduler {class_name!r}; expected one of {sorted(SCHEDULER_KINDS)}")
            kw["kind"] = SCHEDULER_KINDS[class_name]
        return cls(**kw)

    @classmethod
    def from_pretrained(cls, folder: str) -> "SchedulerConfig":
        """Read ``scheduler_config.json`` from ``folder`` (the ``scheduler/`` directory) or from
        ``folder/scheduler/`` (a diffusers pipeline root). Unknown keys are ignored."""
        path = os.path.join(folder, "scheduler_config.json")
        if not os.path.exists(path):
            path = os.path.join(folder, "scheduler", "scheduler_config.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"no scheduler_config.json in {folder} or {folder}/scheduler")
        from cogvideox_jax.errors import CheckpointFormatError
        from cogvideox_jax.paths import read_json

        config = read_json(path)  # an unreadable / non-UTF-8 / malformed file: CheckpointFormatError naming it
        try:
            return cls.from_diffusers_config(config)
        except (TypeError, ValueError) as e:
            raise CheckpointFormatError(f"unsupported scheduler config {path!r}: {e}") from e

    def to_diffusers_config(self) -> dict:
        d = dataclasses.asdict(self)
        kind = d.pop("kind")
        d["_class_name"] = {v: k for k, v in SCHEDULER_KINDS.items()}[kind]
        return d


# CogVideoX-2b: DDIM, SNR shift 3; CogVideoX-5b / 5b-I2V / 1.5: DPM, SNR shift 1.
COGVIDEOX_2B = SchedulerConfig(kind="ddim", snr_shift_scale=3.0)
COGVIDEOX_5B = SchedulerConfig(kind="dpm", snr_shift_scale=1.0)
COGVIDEOX_5B_I2V = COGVIDEOX_5B
COGVIDEOX_1_5 = COGVIDEOX_5B
PRESETS = {"2b": COGVIDEOX_2B, "5b": COGVIDEOX_5B, "5b-i2v": COGVIDEOX_5B_I2V, "1.5": COGVIDEOX_1_5}
