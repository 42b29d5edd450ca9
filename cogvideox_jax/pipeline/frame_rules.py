"""Valid frame counts / sizes and the latent shapes they map to (the reference's rules).

* CogVideoX 1.0 (no ``patch_size_t``): ``8N+1`` frames (the VAE compresses time 4x keeping the
  first frame: 49 frames -> 13 latents).
* CogVideoX 1.5 (``patch_size_t = 2``): ``16N+1`` frames (81 -> 21 latents); the latent count is
  padded to a multiple of ``patch_size_t`` (21 -> 22) and the extra latent is dropped after denoising.
* Height and width must be multiples of ``vae spatial factor x patch_size`` (8 x 2 = 16).
* Video-to-video (``plan_video_frames``) takes the input video's frame count as diffusers'
  ``CogVideoXVideoToVideoPipeline``: ``4N+1`` frames, and for 1.5 a latent count that ``patch_size_t``
  divides (no padding latent: e.g. 85 frames -> 22 latents). The causal decoder keeps a separate first
  frame only for an odd latent count, so an even count decodes to ``4 x latents`` frames (85 -> 88),
  as in diffusers.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class FramePlan:
    num_frames: int
    height: int
    width: int
    latent_frames: int          # latents that the VAE decodes (after dropping the padding)
    padded_latent_frames: int   # latents the transformer denoises
    additional_frames: int      # leading padding latents dropped after denoising
    latent_height: int
    latent_width: int


def plan_frames(num_frames: int, height: int, width: int, *, patch_size: int, patch_size_t: int | None,
                temporal_compression: int = 4, spatial_compression: int = 8) -> FramePlan:
    """Check ``num_frames`` / ``height`` / ``width`` and compute the latent shapes; raise a clear error
    listing the valid values when they don't fit."""
    frame_step = temporal_compression * (patch_size_t or 2)
    if num_frames < 1 or (num_frames - 1) % frame_step:
        lo = (max(num_frames - 1, 0) // frame_step) * frame_step + 1
        variant = "CogVideoX 1.5 (patch_size_t=2)" if patch_size_t else "CogVideoX 1.0"
        raise ValueError(
            f"num_frames={num_frames} is not valid for {variant}: use {frame_step}N+1 frames "
            f"(e.g. {lo}, {lo + frame_step}, ... ; the reference uses {'81' if patch_size_t else '49'})"
        )
    size_step = spatial_compression * patch_size
    for name, value in (("height", height), ("width", width)):
        if value <= 0 or value % size_step:
            raise ValueError(
                f"{name}={value} must be a positive multiple of {size_step} "
                f"(VAE spatial factor {spatial_compression} x patch size {patch_size}); "
                f"nearest valid: {max(size_step, round(value / size_step) * size_step)}"
            )
    latent_frames = (num_frames - 1) // temporal_compression + 1
    additional = 0
    if patch_size_t and latent_frames % patch_size_t:
        additional = patch_size_t - latent_frames % patch_size_t
    return FramePlan(
        num_frames=num_frames, height=height, width=width,
        latent_frames=latent_frames, padded_latent_frames=latent_frames + additional,
        additional_frames=additional,
        latent_height=height // spatial_compression, latent_width=width // spatial_compression,
    )


def plan_video_frames(num_frames: int, height: int, width: int, *, patch_size: int, patch_size_t: int | None,
                      temporal_compression: int = 4, spatial_compression: int = 8) -> FramePlan:
    """The plan of a video-to-video request on a ``num_frames``-frame input video (see the module doc)."""
    t = temporal_compression
    if num_frames < 1 or (num_frames - 1) % t:
        lo = (max(num_frames - 1, 0) // t) * t + 1
        raise ValueError(f"video-to-video: the video has {num_frames} frames; use {t}N+1 frames (e.g. {lo} or "
                         f"{lo + t}: the VAE keeps the first frame and compresses the rest {t}x)")
    latent_frames = (num_frames - 1) // t + 1
    if patch_size_t and latent_frames % patch_size_t:
        raise ValueError(f"video-to-video: {num_frames} frames give {latent_frames} latent frames, which "
                         f"patch_size_t={patch_size_t} does not divide (as diffusers: no padding); use "
                         f"{num_frames - t} or {num_frames + t} frames")
    base = plan_frames(1 + t * (patch_size_t or 2), height, width, patch_size=patch_size, patch_size_t=patch_size_t,
                       temporal_compression=t, spatial_compression=spatial_compression)  # checks the size
    return FramePlan(num_frames=num_frames, height=height, width=width, latent_frames=latent_frames,
                     padded_latent_frames=latent_frames, additional_frames=0,
                     latent_height=base.latent_height, latent_width=base.latent_width)
