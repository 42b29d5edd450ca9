"""Per-step classifier-free-guidance scales, computed on the host in float64.

Dynamic CFG follows the reference pipeline *exactly*, including its quirk: the formula uses the
timestep **value** ``t`` (999, 979, ...), not the step index::

    w_t = 1 + w * (1 - cos(pi * ((N - t) / N) ** 5)) / 2

With ``t`` up to 999 and ``N`` = 50 the base ``(N - t) / N`` is large and negative, so the cosine
argument reaches ~1e7: it must be evaluated in float64 (a float32 evaluation inside the compiled
loop would give different scales). Kept for parity with diffusers; documented in the README.
"""
from __future__ import annotations

import math

import numpy as np


def guidance_scales(timesteps, guidance_scale: float, use_dynamic_cfg: bool) -> np.ndarray:
    """The guidance scale used at each denoising step (float32 array of ``len(timesteps)``)."""
    n = len(timesteps)
    if not use_dynamic_cfg:
        return np.full((n,), guidance_scale, np.float32)
    return np.array(
        [1 + guidance_scale * (1 - math.cos(math.pi * ((n - int(t)) / n) ** 5.0)) / 2 for t in timesteps],
        np.float32,
    )
