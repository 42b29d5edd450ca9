"""Frame sampling at a target frame rate.

A clip of ``num_out`` frames at ``target_fps`` takes every ``step = src_fps / target_fps``-th source
frame (rounded to the nearest index). Frames are never duplicated to raise the frame rate: a source
slower than the target is read at stride 1. A source too short for ``num_out`` frames at that stride
is spread uniformly over its whole length instead (a smaller stride; frames repeat only when the
source has fewer than ``num_out`` frames).
"""
from __future__ import annotations

import math

import numpy as np


def frame_step(src_fps: float, target_fps: float | None) -> float:
    """Source frames per output frame (>= 1). ``target_fps`` None or <= 0 keeps every frame."""
    if target_fps is None or target_fps <= 0 or not src_fps or not math.isfinite(src_fps) or src_fps <= 0:
        return 1.0
    return max(1.0, float(src_fps) / float(target_fps))


def frames_at_fps(num_frames: int, src_fps: float, target_fps: float | None) -> int:
    """How many output frames a ``num_frames``-frame source holds at ``target_fps``."""
    if num_frames <= 0:
        return 0
    step = frame_step(src_fps, target_fps)
    return int(math.floor((num_frames - 1) / step + 1e-9)) + 1


def sample_frame_indices(num_frames: int, src_fps: float, target_fps: float | None, num_out: int,
                         offset_fraction: float = 0.0) -> np.ndarray:
    """Source frame indices (int64, ``(num_out,)``, non-decreasing) of a ``num_out``-frame clip.

    ``offset_fraction`` in [0, 1] places the clip inside a longer source: 0 = from the first frame,
    0.5 = centred, 1 = ending at the last frame (a seeded random value gives temporal augmentation).
    """
    if num_frames <= 0:
        raise ValueError("video has no frames")
    if num_out <= 0:
        raise ValueError(f"num_out must be positive, got {num_out}")
    step = frame_step(src_fps, target_fps)
    span = (num_out - 1) * step
    if span > num_frames - 1 + 1e-9:
        return np.round(np.linspace(0, num_frames - 1, num_out)).astype(np.int64)
    start = float(np.clip(offset_fraction, 0.0, 1.0)) * (num_frames - 1 - span)
    idx = np.round(start + np.arange(num_out) * step).astype(np.int64)
    return np.clip(idx, 0, num_frames - 1)
