"""The CogVideoX stochastic DPM-Solver++(2M) step (diffusers ``CogVideoXDPMScheduler.step``).

The step is stochastic: the reference draws fresh Gaussian noise at every step. Here the noise is an
argument, so a caller decides where it comes from (the pipeline derives it from the seed; tests feed
the reference the same noise). The previous step's x0 prediction is the carried state.

Reference quirk (matters only for seed-level parity with a torch generator): on 2M steps diffusers
calls ``randn_tensor`` twice, computes a first-order ``prev_sample`` with the first draw, discards
it, and uses the *second* draw for the returned sample; on first-order steps (the first step, and
the last when ``prev_t < 0``) only one draw is made. ``noise`` here is the draw actually used.
The pipeline calls ``step(v, old_x0, t, timesteps[i - 1] if i > 0 else None, x)``: the
"timestep_back" is the previous *listed* timestep (not ``t + 1000 // N``), which is what the
precomputed ``coef_d_x0`` / ``coef_d_old`` use.
"""
from __future__ import annotations

import jax.numpy as jnp

from cogvideox_jax.diffusion.sampling_schedule import SamplingSchedule, predict_x0, scale


def dpm_step(schedule: SamplingSchedule, i, model_output, sample, noise, old_x0):
    """One step; returns ``(prev_sample, pred_x0)`` (feed ``pred_x0`` back as ``old_x0``).

    First order on the first step and on the last (``prev < 0``); 2M (``D = (1+1/2r) x0 - 1/2r x0_old``)
    otherwise, exactly as the reference.
    """
    x0 = predict_x0(schedule, i, model_output, sample)
    d2 = scale(schedule.coef_d_x0[i], x0) - scale(schedule.coef_d_old[i], old_x0)
    d = jnp.where(schedule.second_order[i], d2, x0.astype(d2.dtype))
    prev = scale(schedule.coef_x[i], sample) - scale(schedule.coef_x0[i], d) + scale(schedule.coef_noise[i], noise)
    return prev, x0
