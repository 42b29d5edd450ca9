"""A picture of videos: one row per video (its frames side by side, upscaled), written as PNG."""
from __future__ import annotations

import numpy as np


def frame_strip(videos, scale: int = 2, gap: int = 2, every: int = 1) -> np.ndarray:
    """uint8 ``(rows·(H·scale+gap), cols·(W·scale+gap), 3)`` image of ``videos`` (list of uint8
    ``(T, H, W, 3)``), every ``every``-th frame, nearest-neighbour upscaled by ``scale``."""
    rows = []
    for v in videos:
        v = np.asarray(v)[::every]
        frames = [np.repeat(np.repeat(f, scale, 0), scale, 1) for f in v]
        pad = np.full((frames[0].shape[0], gap, 3), 255, np.uint8)
        row = np.concatenate([x for f in frames for x in (f, pad)], axis=1)
        rows.append(np.concatenate([row, np.full((gap, row.shape[1], 3), 255, np.uint8)], axis=0))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)


def write_frame_strip(path: str, videos, **kw) -> str:
    import imageio.v2 as imageio

    imageio.imwrite(path, frame_strip(videos, **kw))
    return path
