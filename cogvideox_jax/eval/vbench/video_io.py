"""Decoded videos for VBench scoring: uint8 RGB frames plus the frame rate.

A thin view over the project's mp4 I/O (``cogvideox_jax.data.video_io`` / ``video_decode``,
imageio-ffmpeg, no torch). VBench decodes with decord (most dimensions) and OpenCV (dynamic degree);
all go through FFmpeg, so pixel values of the same H.264 stream agree up to the colour conversion.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from cogvideox_jax.data import video_io


@dataclasses.dataclass(frozen=True)
class DecodedVideo:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    fps: float


def read_video(path: str) -> DecodedVideo:
    from cogvideox_jax.data.video_decode import probe_video

    return DecodedVideo(video_io.read_video_uint8(path), probe_video(path).fps)


def write_video(path: str, frames: np.ndarray, fps: float) -> None:
    """Write uint8 (T, H, W, 3) frames as an H.264 mp4 (used by tests and the generator)."""
    video_io.write_video(path, frames, fps=fps)
