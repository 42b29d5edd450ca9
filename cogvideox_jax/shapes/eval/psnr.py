"""PSNR between two videos (e.g. VAE reconstructions)."""
from __future__ import annotations

import numpy as np


def psnr(video_a, video_b, data_range: float | None = None) -> float:
    """PSNR in dB over all pixels of two same-shaped videos.

    ``data_range`` defaults to 255 for uint8 input and 1.0 for float input (use 2.0 for [-1, 1]).
    Identical inputs give ``inf``.
    """
    a, b = np.asarray(video_a), np.asarray(video_b)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    if data_range is None:
        data_range = 255.0 if (a.dtype == np.uint8 and b.dtype == np.uint8) else 1.0
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range ** 2 / mse))
