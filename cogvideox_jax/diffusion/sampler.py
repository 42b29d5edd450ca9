"""One interface over both schedulers for sampling loops: ``step(schedule, state, i, v, x, noise)``.

The carried ``state`` is the previous x0 prediction (used by DPM-Solver++(2M); ignored by DDIM).
"""
from __future__ import annotations

import jax.numpy as jnp

from cogvideox_jax.diffusion.ddim_cogvideox import ddim_step
from cogvideox_jax.diffusion.dpm_cogvideox import dpm_step
from cogvideox_jax.diffusion.sampling_schedule import SamplingSchedule


INIT_NOISE_SIGMA = 1.0  # both CogVideoX schedulers: initial latents are unit Gaussian noise


def scale_model_input(sample, timestep=None):
    """Identity, as the reference ``scale_model_input`` of both CogVideoX schedulers."""
    del timestep
    return sample


def init_state(latents):
    return jnp.zeros(latents.shape, jnp.float32)


def scheduler_step(schedule: SamplingSchedule, state, i, model_output, sample, noise):
    """``(prev_sample, new_state)`` for ``schedule.kind`` in {"ddim", "dpm"}."""
    if schedule.kind == "ddim":
        prev, x0 = ddim_step(schedule, i, model_output, sample)
    else:
        prev, x0 = dpm_step(schedule, i, model_output, sample, noise, state)
    return prev, x0
