"""VAE latents <-> the transformer's latent space, by the VAE config's diffusers scaling fields.

- ``scaling_factor`` alone (every CogVideoX): ``z · s``;
- ``latents_mean`` / ``latents_std`` (one value per latent channel; diffusers' convention where a VAE
  config has them, e.g. the SDXL pipelines): ``(z − μ) · s / σ``;
- ``shift_factor`` (SD3 / Flux style): ``(z − shift) · s``.

The CogVideoX references use ``scaling_factor`` only, so their configs (``latents_mean`` etc. None)
give exactly the reference's ``z · s`` / ``z / s``. The per-channel form is for VAEs whose channels
have offsets and spreads of their own (the embedded shapes model: ``cogvideox_jax/shapes/config.py``). Channels
are the last axis (``(B, t, h, w, C)``); works on numpy and jax arrays, inside ``jit`` too.
1.5-I2V's ``invert_scale_latents`` quirk (image latents divided by s) stays with its caller.
"""
from __future__ import annotations

import numpy as np


def _channel_stats(config):
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if (mean is None) != (std is None):
        raise ValueError("the VAE config sets only one of latents_mean / latents_std; set both or neither")
    if mean is None:
        return None, None
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    if mean.shape != std.shape or mean.ndim != 1:
        raise ValueError(f"latents_mean {mean.shape} and latents_std {std.shape} must be equal-length lists")
    return mean, std


def has_offsets(config) -> bool:
    """Whether the config does more than multiply latents by ``scaling_factor`` (per-channel
    ``latents_mean`` / ``latents_std``, either of them set, or a ``shift_factor``)."""
    return any(getattr(config, k, None) is not None for k in ("latents_mean", "latents_std", "shift_factor"))


def _affine(config, z):
    """``(offset or None, multiplier)`` with ``scaled = (z − offset) · multiplier``."""
    s = np.float32(config.scaling_factor)
    mean, std = _channel_stats(config)
    if mean is not None:
        if z.shape[-1] != mean.shape[0]:
            raise ValueError(f"latents have {z.shape[-1]} channels (last axis) but the VAE config's "
                             f"latents_mean has {mean.shape[0]}")
        return mean, s / std
    shift = getattr(config, "shift_factor", None)
    return (None if shift is None else np.float32(shift)), s


def scale_latents(z, config):
    """Raw VAE latents (posterior mean or sample) -> the transformer's space."""
    offset, mult = _affine(config, z)
    return (z if offset is None else z - offset) * mult


def unscale_latents(z, config):
    """The transformer's latents -> what the VAE decodes (inverse of ``scale_latents``)."""
    offset, mult = _affine(config, z)
    z = z / mult
    return z if offset is None else z + offset
