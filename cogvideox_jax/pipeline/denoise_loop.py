"""The denoising loop: one ``lax.scan`` over the steps, compiled once per shape.

Each step: classifier-free-guidance batch ``[uncond, cond]`` through the transformer (with the
I2V image latents channel-concatenated, and ``ofs`` for 1.5-I2V), guidance with a per-step scale
table (``cogvideox_jax/diffusion/guidance.py``), then the scheduler step. The DPM scheduler's fresh noise is
drawn from ``fold_in(noise_key, i)`` so a run is reproducible from ``seed`` and a test can feed the
same noise to the reference.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from cogvideox_jax.pipeline.progress import tick


def step_noise(noise_key, i, shape, dtype=jnp.float32):
    """The scheduler noise used at step ``i`` (the same function the tests use to feed diffusers)."""
    return jax.random.normal(jax.random.fold_in(noise_key, i), shape, dtype)


def denoise(
    model_fn: Callable,           # (latent_model_input, text_embeds, timesteps[B]) -> v prediction
    scheduler_step: Callable,     # (state, i, v, x, noise) -> (x_prev, state)
    scheduler_state,              # the scheduler's initial carry (pytree)
    latents,                      # (B, t, h, w, C)
    text_embeds,                  # (2B, L, D) [uncond, cond] with CFG, else (B, L, D)
    timesteps,                    # (N,) int32
    guidance,                     # (N,) float32 per-step guidance scale
    *,
    do_cfg: bool,
    image_latents=None,           # (B, t, h, w, C) I2V conditioning, or None
    noise_key=None,
    progress: bool = True,
):
    """Run all denoising steps; returns the final latents."""
    if noise_key is None:
        noise_key = jax.random.PRNGKey(0)
    cond_image = None
    if image_latents is not None:
        cond_image = jnp.concatenate([image_latents] * 2) if do_cfg else image_latents

    def body(carry, i):
        x, state = carry
        x_in = jnp.concatenate([x, x]) if do_cfg else x
        if cond_image is not None:
            x_in = jnp.concatenate([x_in, cond_image.astype(x_in.dtype)], axis=-1)
        t = timesteps[i]
        v = model_fn(x_in, text_embeds, jnp.full((x_in.shape[0],), t)).astype(jnp.float32)
        if do_cfg:
            v_uncond, v_cond = jnp.split(v, 2)
            v = v_uncond + guidance[i] * (v_cond - v_uncond)
        noise = step_noise(noise_key, i, x.shape)
        x_next, state = scheduler_step(state, i, v, x.astype(jnp.float32), noise)
        if progress:
            tick(i)
        return (x_next.astype(x.dtype), state), None

    (latents, _), _ = jax.lax.scan(body, (latents, scheduler_state), jnp.arange(timesteps.shape[0]))
    return latents
