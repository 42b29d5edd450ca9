"""Whole-clip mp4 write/read with imageio-ffmpeg (libx264, yuv420p by default).

``write_video(path, frames, fps)`` takes uint8 ``(T, H, W, 3)`` or float frames in ``[0, 1]``
(``value_range=(-1, 1)`` for model outputs); ``read_video(path)`` returns float32 ``(T, H, W, 3)`` in
[0, 1] (``read_video_uint8`` for the raw decode). For partial / streaming decodes use
``cogvideox_jax.data.video_decode``.
"""
from __future__ import annotations

import os
import uuid

import numpy as np


def to_uint8(frames, value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """uint8 frames from uint8 (returned as is) or float frames in ``value_range``."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    lo, hi = value_range
    x = (frames.astype(np.float32) - lo) / (hi - lo)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


class VideoWriteError(OSError):
    """A video could not be written (ffmpeg failed, or the file could not be created or moved in place)."""


def write_video(path, frames, fps: float = 8.0, crf: int = 12, pix_fmt: str = "yuv420p",
                value_range: tuple[float, float] = (0.0, 1.0), threads: int = 1) -> str:
    """Encode ``frames`` ``(T, H, W, 3)`` to an H.264 mp4 at ``path``; returns ``path``.

    ``crf`` 0–51 (lower = closer to the input; the default 12 keeps flat colors within a few levels).
    Any frame size works (no macro-block padding); yuv420p needs even H and W for most players.
    ``threads=1`` keeps the encode light and bit-for-bit reproducible.

    The video is encoded to a temporary file next to ``path`` and renamed to ``path`` once ffmpeg has
    succeeded, so ``path`` never holds a half-written video; any failure (ffmpeg's exit status, its
    messages) is a ``VideoWriteError`` naming ``path``.
    """
    import subprocess
    from fractions import Fraction

    import imageio_ffmpeg

    frames = to_uint8(frames, value_range)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    path = os.fspath(path)
    t, h, w, _ = frames.shape
    # the command imageio_ffmpeg.write_frames builds for these settings, run here so that its exit status
    # and messages are seen
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{w}x{h}",
           "-pix_fmt", "rgb24", "-r", str(Fraction(fps).limit_denominator()), "-i", "-", "-an",
           "-vcodec", "libx264", "-pix_fmt", pix_fmt, "-v", "error", "-crf", str(int(crf)),
           "-threads", str(int(threads))]

    def encode(tmp: str) -> None:
        data = np.ascontiguousarray(frames).reshape(-1).data
        proc = subprocess.run(cmd + [tmp], input=data, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if proc.returncode != 0:
            msg = proc.stderr.decode(errors="replace").strip()
            raise VideoWriteError(f"cannot write video {path!r}: ffmpeg exited with status {proc.returncode}"
                                  + (f": {msg}" if msg else ""))

    return write_atomically(path, encode)


def save_video(path: str, frames, fps: float) -> None:
    """frames: float (T, H, W, 3) in [0, 1] -> .mp4 (libx264) or .gif, written to a temporary file in the
    same folder and renamed to ``path`` at the end; a failure is a ``VideoWriteError`` naming ``path``."""
    if os.fspath(path).lower().endswith(".gif"):
        import imageio.v2 as imageio

        write_atomically(path, lambda tmp: imageio.mimsave(tmp, list(to_uint8(np.asarray(frames))),
                                                           duration=1.0 / fps, loop=0))
    else:
        write_video(path, frames, fps=fps)


def write_atomically(path, write) -> str:
    """Call ``write(tmp)`` to write a file at ``tmp``, a fresh name in ``path``'s folder with ``path``'s
    extension, then rename it to ``path``; on any failure the temporary file is removed and ``path`` is
    left as it was. The folder is created if needed. Errors name ``path`` (``VideoWriteError``)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    name, ext = os.path.splitext(os.path.basename(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise VideoWriteError(f"cannot write video {path!r}: cannot create its folder: {e.strerror or e}") from e
    if os.path.isdir(path):
        raise VideoWriteError(f"cannot write video {path!r}: it is a directory")
    tmp = os.path.join(folder, f".{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial{ext}")
    try:
        write(tmp)
        if not os.path.isfile(tmp) or os.path.getsize(tmp) == 0:
            raise VideoWriteError(f"cannot write video {path!r}: nothing was written")
        os.replace(tmp, path)
    except VideoWriteError:
        _remove_quietly(tmp)
        raise
    except OSError as e:
        _remove_quietly(tmp)
        raise VideoWriteError(f"cannot write video {path!r}: {e.strerror or e}") from e
    except BaseException:
        _remove_quietly(tmp)
        raise
    return path


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


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
