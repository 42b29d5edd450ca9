"""Resize-to-cover + center crop, and [-1, 1] normalisation, for channels-last uint8 frames."""
from __future__ import annotations

import numpy as np
from PIL import Image


def cover_size(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int]:
    """Smallest (h, w) with the source aspect ratio that covers ``target_h x target_w``."""
    scale = max(target_h / height, target_w / width)
    return max(target_h, int(round(height * scale))), max(target_w, int(round(width * scale)))


def center_crop_offsets(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int]:
    """(top, left) of a centred ``target_h x target_w`` window."""
    if target_h > height or target_w > width:
        raise ValueError(f"crop {target_h}x{target_w} larger than image {height}x{width}")
    return (height - target_h) // 2, (width - target_w) // 2


def resize_center_crop(frames: np.ndarray, target_h: int, target_w: int,
                       resample: int = Image.Resampling.BICUBIC) -> np.ndarray:
    """``(T, H, W, 3)`` (or ``(H, W, 3)``) uint8 → same rank at ``target_h x target_w`` uint8.

    Scales so the frame covers the target (antialiased when shrinking), then crops the centre.
    """
    squeeze = frames.ndim == 3
    if squeeze:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W, 3) frames, got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames, got {frames.dtype}")
    _, h, w, _ = frames.shape
    nh, nw = cover_size(h, w, target_h, target_w)
    top, left = center_crop_offsets(nh, nw, target_h, target_w)
    out = np.empty((frames.shape[0], target_h, target_w, 3), np.uint8)
    for i, f in enumerate(frames):
        img = f if (nh, nw) == (h, w) else np.asarray(Image.fromarray(f).resize((nw, nh), resample=resample))
        out[i] = img[top:top + target_h, left:left + target_w]
    return out[0] if squeeze else out


def normalize_frames(frames: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] → float32 [-1, 1]."""
    return frames.astype(np.float32) * np.float32(1 / 127.5) - np.float32(1.0)
