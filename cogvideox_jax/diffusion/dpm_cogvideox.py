"""The CogVideoX stochastic DPM-Solver++(2M) step (diffusers ``CogVideoXDPMScheduler.step``).

The step is stochastic: the reference draws fresh Gaussian noise at every step. Here the noise is an
argument, so a caller decides where it comes from (the pipeline derives it from the seed; tests feed
the reference the same noise). The previous step's x0 prediction is the carried state.
"""
from __future__ import annotations

import jax.numpy as jnp

from cogvideox_jax.diffusion.sampling_schedule import SamplingSchedule, predict_x0


def dpm_step(schedule: SamplingSchedule, i, model_output, sample, noise, old_x0):
    """One step; returns ``(prev_sample, pred_x0)`` (feed ``pred_x0`` back as ``old_x0``).

    First order on the first step and on the last (``prev < 0``); 2M (``D = (1+1/2r) x0 - 1/2r x0_old``)
    otherwise, exactly as the reference.
    """
    x0 = predict_x0(schedule, i, model_output, sample)
    d = jnp.where(schedule.second_order[i], schedule.coef_d_x0[i] * x0 - schedule.coef_d_old[i] * old_x0, x0)
    prev = schedule.coef_x[i] * sample - schedule.coef_x0[i] * d + schedule.coef_noise[i] * noise
    return prev, x0
