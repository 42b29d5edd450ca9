"""Probe and decode only the needed frames of a video with imageio-ffmpeg (streaming, uint8 RGB).

Used by the training pipeline, which needs (frame count, fps, size) per video before decoding and
then a handful of frame indices; every failure is raised as VideoDecodeError so callers can skip
the file.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


class VideoDecodeError(RuntimeError):
    """The file is missing, not a video, corrupt, truncated, or has fewer frames than needed."""


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int   # estimated from duration x fps (the container's count, not decoded)
    fps: float
    height: int
    width: int


def _open(path: str):
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(path, pix_fmt="rgb24")
    try:
        meta = next(gen)
    except Exception as e:  # ffmpeg failed to open / parse the file
        gen.close()
        raise VideoDecodeError(f"cannot open {path}: {str(e).strip().splitlines()[-1] if str(e).strip() else e!r}") from e
    return gen, meta


def probe_video(path: str) -> VideoInfo:
    """Frame count (duration x fps, rounded), fps and size of ``path`` (reads the header only)."""
    gen, meta = _open(path)
    gen.close()
    fps = float(meta.get("fps") or 0.0)
    duration = float(meta.get("duration") or 0.0)
    width, height = meta.get("size") or (0, 0)
    if not (fps > 0 and math.isfinite(fps)) or not (duration > 0 and math.isfinite(duration)):
        raise VideoDecodeError(f"{path}: no usable fps/duration in the header (fps={fps}, duration={duration})")
    if width <= 0 or height <= 0:
        raise VideoDecodeError(f"{path}: no frame size in the header")
    return VideoInfo(max(1, int(round(duration * fps))), fps, int(height), int(width))


def read_frames(path: str, indices) -> np.ndarray:
    """Frames ``indices`` (non-negative ints, any order, repeats allowed) as uint8 ``(N, H, W, 3)``.

    Decodes sequentially up to ``max(indices)`` and keeps only the requested frames. Raises
    VideoDecodeError(.num_decoded set) if the stream ends first or ffmpeg reports an error.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size == 0 or indices.min() < 0:
        raise ValueError("indices must be a non-empty set of non-negative ints")
    wanted = set(int(i) for i in indices)
    last = int(indices.max())
    gen, meta = _open(path)
    width, height = meta["size"]
    frame_bytes = width * height * 3
    kept: dict[int, np.ndarray] = {}
    n = 0
    try:
        for buf in gen:
            if len(buf) != frame_bytes:
                break
            if n in wanted:
                kept[n] = np.frombuffer(buf, np.uint8).reshape(height, width, 3)
            n += 1
            if n > last:
                break
    except Exception as e:
        err = VideoDecodeError(f"{path}: decode failed after {n} frames ({e!r})")
        err.num_decoded = n
        raise err from e
    finally:
        gen.close()
    if n <= last:
        err = VideoDecodeError(f"{path}: stream ended after {n} frames, frame {last} needed")
        err.num_decoded = n
        raise err
    return np.stack([kept[int(i)] for i in indices])
