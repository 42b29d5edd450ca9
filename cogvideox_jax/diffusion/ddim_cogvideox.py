"""The CogVideoX DDIM step (diffusers ``CogVideoXDDIMScheduler.step``, eta = 0) as a pure function."""
from __future__ import annotations

from cogvideox_jax.diffusion.sampling_schedule import SamplingSchedule, predict_x0, scale


def ddim_step(schedule: SamplingSchedule, i, model_output, sample):
    """One step from timestep ``schedule.timesteps[i]``; returns ``(prev_sample, pred_x0)``."""
    x0 = predict_x0(schedule, i, model_output, sample)
    return scale(schedule.coef_x[i], sample) + scale(schedule.coef_x0[i], x0), x0
