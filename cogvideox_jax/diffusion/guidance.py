"""Classifier-free guidance of the CogVideoX pipelines (``pipeline_cogvideox.py`` denoising loop).

Per step the reference does::

    if use_dynamic_cfg:
        self._guidance_scale = 1 + guidance_scale * (
            (1 - math.cos(math.pi * ((num_inference_steps - t.item()) / num_inference_steps) ** 5.0)) / 2
        )
    noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
    noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)

Quirk kept for parity: the dynamic scale uses the timestep **value** ``t`` (999, 979, ..., 19),
not the step index, so ``(N - t) / N`` is a large negative number (≈ -19 at t = 999, N = 50) and
the cosine argument reaches ~1e7 — the scale jumps pseudo-randomly in ``[1, 1 + w]`` instead of
ramping smoothly (SAT's original ramps over the index). The scale is therefore computed on the
host in float64 (a float32 cosine of ~1e7 inside a compiled loop would differ) and then rounded to
float32, as torch does when it multiplies the float32 prediction by the Python float. The base
``guidance_scale`` is reused every step (no compounding), and CFG is on iff ``guidance_scale > 1``.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np


def dynamic_guidance_scale(t: int, num_inference_steps: int, guidance_scale: float) -> float:
    """The reference's per-step scale ``1 + w (1 - cos(pi ((N - t) / N)^5)) / 2`` (float64)."""
    n = num_inference_steps
    return 1 + guidance_scale * (1 - math.cos(math.pi * ((n - int(t)) / n) ** 5.0)) / 2


def guidance_scale_table(timesteps, guidance_scale: float, use_dynamic_cfg: bool,
                         num_inference_steps: int | None = None) -> np.ndarray:
    """float32 ``(len(timesteps),)`` scale per step (index it with the step index inside a scan)."""
    n = len(timesteps) if num_inference_steps is None else num_inference_steps
    if not use_dynamic_cfg:
        return np.full((len(timesteps),), guidance_scale, np.float32)
    return np.asarray([dynamic_guidance_scale(t, n, guidance_scale) for t in timesteps], np.float64).astype(np.float32)


def uses_guidance(guidance_scale: float) -> bool:
    """The reference's ``do_classifier_free_guidance = guidance_scale > 1.0`` (decided on the base scale)."""
    return guidance_scale > 1.0


def classifier_free_guidance(pred_uncond, pred_cond, scale):
    """``uncond + scale * (cond - uncond)`` computed in float32 (the reference calls ``.float()`` first)."""
    u = pred_uncond.astype(jnp.float32)
    c = pred_cond.astype(jnp.float32)
    return u + jnp.asarray(scale, jnp.float32) * (c - u)
