"""CogVideoX 1.5 training on clips whose latent frame count is not a multiple of ``patch_size_t``.

1.5 patches 2 latent frames into a token, but 8N+1-frame clips encode to an odd number of latent
frames (49 -> 13, 81 -> 21). The reference fine-tuning (CogVideo ``finetune/``) prepends copies of the
first latent frame until the count divides; the pipeline pads its noise the same way at sampling.
"""
from __future__ import annotations

import jax.numpy as jnp


def padded_frames(t: int, patch_size_t: int | None) -> int:
    """The latent frame count after padding ``t`` to a multiple of ``patch_size_t``."""
    p = patch_size_t or 1
    return t + (-t) % p


def pad_latent_frames(latents, patch_size_t: int | None):
    """``(B, t, h, w, C)`` -> ``(B, padded_frames(t), h, w, C)``, the first frame repeated in front."""
    n = padded_frames(latents.shape[1], patch_size_t) - latents.shape[1]
    if n == 0:
        return latents
    return jnp.concatenate([jnp.repeat(latents[:, :1], n, axis=1), latents], axis=1)
