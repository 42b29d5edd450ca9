"""Whole-clip mp4 write/read with imageio-ffmpeg (libx264, yuv420p by default).

``write_video(path, frames, fps)`` takes uint8 ``(T, H, W, 3)`` or float frames in ``[0, 1]``
(``value_range=(-1, 1)`` for model outputs); ``read_video(path)`` returns float32 ``(T, H, W, 3)`` in
[0, 1] (``read_video_uint8`` for the raw decode). For partial / streaming decodes use
``cogvideox_jax.data.video_decode``.
"""
from __future__ import annotations

import os

import numpy as np


def to_uint8(frames, value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """uint8 frames from uint8 (returned as is) or float frames in ``value_range``."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    lo, hi = value_range
    x = (frames.astype(np.float32) - lo) / (hi - lo)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def write_video(path, frames, fps: float = 8.0, crf: int = 12, pix_fmt: str = "yuv420p",
                value_range: tuple[float, float] = (0.0, 1.0), threads: int = 1) -> str:
    """Encode ``frames`` ``(T, H, W, 3)`` to an H.264 mp4 at ``path``; returns ``path``.

    ``crf`` 0–51 (lower = closer to the input; the default 12 keeps flat colors within a few levels).
    Any frame size works (no macro-block padding); yuv420p needs even H and W for most players.
    ``threads=1`` keeps the encode light and bit-for-bit reproducible.
    """
    import imageio_ffmpeg

    frames = to_uint8(frames, value_range)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    t, h, w, _ = frames.shape
    writer = imageio_ffmpeg.write_frames(
        path, (w, h), fps=fps, codec="libx264", pix_fmt_out=pix_fmt, quality=None, macro_block_size=1,
        ffmpeg_log_level="error", output_params=["-crf", str(int(crf)), "-threads", str(int(threads))])
    writer.send(None)
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame).tobytes())
    finally:
        writer.close()
    return path


def read_video_uint8(path) -> np.ndarray:
    """All frames of ``path`` as uint8 ``(T, H, W, 3)`` RGB."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(os.fspath(path), pix_fmt="rgb24")
    try:
        meta = next(gen)
        w, h = meta["size"]
        frames = [np.frombuffer(buf, np.uint8).reshape(h, w, 3) for buf in gen if len(buf) == w * h * 3]
    finally:
        gen.close()
    if not frames:
        raise ValueError(f"{path}: no frames decoded")
    return np.stack(frames)


def read_video(path) -> np.ndarray:
    """All frames of ``path`` as float32 ``(T, H, W, 3)`` in [0, 1]."""
    return read_video_uint8(path).astype(np.float32) / 255.0
