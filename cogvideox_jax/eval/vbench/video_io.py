"""Decode a video file into uint8 RGB frames and its frame rate (imageio-ffmpeg; no torch).

VBench decodes with decord (most dimensions) and OpenCV (dynamic degree). Both go through FFmpeg;
pixel values of the same H.264 stream agree up to the decoder's colour conversion.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class DecodedVideo:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    fps: float


def read_video(path: str) -> DecodedVideo:
    import imageio.v2 as imageio

    reader = imageio.get_reader(path, format="FFMPEG")
    try:
        fps = float(reader.get_meta_data().get("fps", 8.0))
        frames = [np.asarray(f, dtype=np.uint8)[..., :3] for f in reader]
    finally:
        reader.close()
    if not frames:
        raise ValueError(f"{path}: no frames decoded")
    return DecodedVideo(np.stack(frames), fps)


def write_video(path: str, frames: np.ndarray, fps: float) -> None:
    """Write uint8 (T, H, W, 3) frames as H.264 mp4 (used by tests and the generator)."""
    import imageio.v2 as imageio

    writer = imageio.get_writer(path, format="FFMPEG", fps=fps, codec="libx264", quality=8, macro_block_size=1)
    try:
        for frame in frames:
            writer.append_data(np.asarray(frame, dtype=np.uint8))
    finally:
        writer.close()
