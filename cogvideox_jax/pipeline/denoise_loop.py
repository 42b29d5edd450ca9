"""The denoising loop: one ``lax.scan`` over the steps, compiled once per shape.

Each step: classifier-free-guidance batch ``[uncond, cond]`` through the transformer (with the
I2V image latents channel-concatenated, and ``ofs`` for 1.5-I2V), guidance with a per-step scale
table (``cogvideox_jax/diffusion/guidance.py``), then the scheduler step. An ``ExtraGuidance`` adds K
conditioning rows: the batch is ``[uncond, cond, extra_1, ..., extra_K]`` and its ``combine`` turns the
CFG prediction and the extra rows' predictions into the guided one (not part of the reference, off
unless asked for; e.g. the shapes project's contrast guidance). The DPM scheduler's fresh noise is
drawn from ``fold_in(noise_key, i)`` so a run is reproducible from ``seed`` and a test can feed the
same noise to the reference. ``noise_key`` may also be a stack of ``G`` keys (one per seed when the
call has a list of seeds): the ``B`` rows then form ``G`` equal groups, group ``g`` drawing its noise
from key ``g`` exactly as a call of that group alone would.

``denoise`` runs the loop as one ``lax.scan``; ``denoise_step`` is the same step as a function of the
step index, which the pipeline also compiles alone for a loop driven from the host (diffusers'
``callback_on_step_end``: the callback runs between steps, so it costs nothing when unset).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from cogvideox_jax.diffusion.guidance import classifier_free_guidance
from cogvideox_jax.pipeline.progress import tick


@dataclasses.dataclass(frozen=True)
class ExtraGuidance:
    """K more conditioning rows per video in the denoising batch, after ``[uncond, cond]``, and how their
    predictions enter the guided one.

    ``embeds``: ``(K * B, L, D)`` text embeddings, k-major (rows ``k B .. (k + 1) B``: condition k of each
    of the call's B videos). ``combine(guided, v_cond, v_extra, i, args) -> guided``: ``guided`` the CFG
    prediction ``(B, ...)``, ``v_extra`` ``(K, B, ...)`` the rows' predictions (float32), ``i`` the step
    index, ``args`` a pytree of arrays (traced). The loop is compiled once per ``(K, combine)``: pass a
    module-level function, and this call's values in ``args``."""
    embeds: Any
    combine: Callable
    args: Any = None


def step_noise(noise_key, i, shape, dtype=jnp.float32):
    """The scheduler noise used at step ``i`` (the same function the tests use to feed diffusers)."""
    return jax.random.normal(jax.random.fold_in(noise_key, i), shape, dtype)


def _step_noise(noise_key, i, shape):
    """``step_noise`` for one key, or per group of rows for a ``(G, 2)`` stack of keys."""
    if noise_key.ndim == 1:
        return step_noise(noise_key, i, shape)
    groups = noise_key.shape[0]
    per_group = (shape[0] // groups,) + tuple(shape[1:])
    return jax.vmap(lambda k: step_noise(k, i, per_group))(noise_key).reshape(shape)


def denoise_step(
    model_fn: Callable,           # (latent_model_input, text_embeds, timesteps[B]) -> v prediction
    scheduler_step: Callable,     # (state, i, v, x, noise) -> (x_prev, state)
    text_embeds,                  # ((1 + do_cfg + K) B, L, D): [uncond (CFG only), cond, extra_1..K]
    timesteps,                    # (N,) int32
    guidance,                     # (N,) float32 per-step guidance scale
    *,
    do_cfg: bool,
    image_latents=None,           # (B, t, h, w, C) I2V conditioning, or None
    noise_key=None,               # a key, or (G, 2) keys: one per group of B / G rows
    progress: bool = False,
    num_extra: int = 0,           # K extra rows per video (0: plain CFG, the reference)
    combine: Callable | None = None,   # ExtraGuidance.combine
    combine_args=None,            # ExtraGuidance.args
):
    """The loop's body ``((x, state), i) -> ((x_next, state), None)`` (``lax.scan``'s signature)."""
    if noise_key is None:
        noise_key = jax.random.PRNGKey(0)
    copies = 1 + int(do_cfg) + num_extra
    cond_image = None
    if image_latents is not None:
        cond_image = jnp.concatenate([image_latents] * copies)

    def body(carry, i):
        x, state = carry
        x_in = jnp.concatenate([x] * copies) if copies > 1 else x
        if cond_image is not None:
            x_in = jnp.concatenate([x_in, cond_image.astype(x_in.dtype)], axis=-1)
        t = timesteps[i]
        v = model_fn(x_in, text_embeds, jnp.full((x_in.shape[0],), t)).astype(jnp.float32)
        chunks = jnp.split(v, copies)
        v_cond = chunks[int(do_cfg)]
        v = classifier_free_guidance(chunks[0], v_cond, guidance[i]) if do_cfg else v_cond
        if num_extra:
            v = combine(v, v_cond, jnp.stack(chunks[1 + int(do_cfg):]), i, combine_args)
        noise = _step_noise(noise_key, i, x.shape)
        x_next, state = scheduler_step(state, i, v, x.astype(jnp.float32), noise)
        if progress:
            tick(i)
        return (x_next.astype(x.dtype), state), None

    return body


def denoise(
    model_fn: Callable,
    scheduler_step: Callable,
    scheduler_state,              # the scheduler's initial carry (pytree)
    latents,                      # (B, t, h, w, C)
    text_embeds,
    timesteps,
    guidance,
    *,
    do_cfg: bool,
    image_latents=None,
    noise_key=None,
    progress: bool = True,
    num_extra: int = 0,
    combine: Callable | None = None,
    combine_args=None,
):
    """Run all denoising steps (one ``lax.scan``; arguments as ``denoise_step``); returns the final latents."""
    body = denoise_step(model_fn, scheduler_step, text_embeds, timesteps, guidance, do_cfg=do_cfg,
                        image_latents=image_latents, noise_key=noise_key, progress=progress,
                        num_extra=num_extra, combine=combine, combine_args=combine_args)
    (latents, _), _ = jax.lax.scan(body, (latents, scheduler_state), jnp.arange(timesteps.shape[0]))
    return latents
