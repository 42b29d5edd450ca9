"""Inference timesteps (``set_timesteps``) for the trailing / leading / linspace spacings."""
from __future__ import annotations

import numpy as np

from configs.scheduler import SchedulerConfig


def inference_timesteps(config: SchedulerConfig, num_inference_steps: int) -> np.ndarray:
    """Descending int64 timesteps, e.g. 50 trailing steps: 999, 979, ..., 19."""
    n_train = config.num_train_timesteps
    if not 1 <= num_inference_steps <= n_train:
        raise ValueError(f"num_inference_steps must be in [1, {n_train}], got {num_inference_steps}")
    if config.timestep_spacing == "linspace":
        return np.linspace(0, n_train - 1, num_inference_steps).round()[::-1].copy().astype(np.int64)
    if config.timestep_spacing == "leading":
        ratio = n_train // num_inference_steps
        ts = (np.arange(0, num_inference_steps) * ratio).round()[::-1].copy().astype(np.int64)
        return ts + config.steps_offset
    ratio = n_train / num_inference_steps
    return np.round(np.arange(n_train, 0, -ratio)).astype(np.int64) - 1


def previous_timesteps(config: SchedulerConfig, timesteps: np.ndarray) -> np.ndarray:
    """The reference's ``prev_timestep = t - num_train_timesteps // N``.

    Kept for parity even though it is only exact when N divides 1000 (for N = 7 the trailing
    steps are 999, 856, ... but the step goes to t - 142); negative means "final"."""
    return timesteps - config.num_train_timesteps // len(timesteps)
