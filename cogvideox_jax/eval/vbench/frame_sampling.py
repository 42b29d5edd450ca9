"""Frame selection exactly as VBench does it.

``middle_frame_indices`` is ``vbench.utils.get_frame_indices(num_frames, vlen, sample="middle")``
(used by ``load_video(..., num_frames=16)`` for human action, scene and multiple objects);
``dynamic_degree_frame_indices`` is ``DynamicDegree.get_frames`` + ``extract_frame``.
Appearance style uses every frame.
"""
from __future__ import annotations

import numpy as np

NUM_MIDDLE_FRAMES = 16


def middle_frame_indices(num_frames: int, vlen: int) -> list[int]:
    """Split ``vlen`` frames into ``min(num_frames, vlen)`` intervals and take each one's middle.

    Intervals are ``np.linspace(0, vlen, n + 1).astype(int)``; interval i is
    ``[edge_i, edge_{i+1} - 1]`` and its middle ``(start + end) // 2``. Padded with the last index
    when the video has fewer than ``num_frames`` frames. 49 frames -> [1, 4, 7, ..., 46].
    """
    if vlen <= 0:
        raise ValueError(f"video has no frames (vlen={vlen})")
    acc_samples = min(num_frames, vlen)
    edges = np.linspace(start=0, stop=vlen, num=acc_samples + 1).astype(int)
    indices = [int((edges[i] + edges[i + 1] - 1) // 2) for i in range(acc_samples)]
    if len(indices) < num_frames:
        indices = indices + [indices[-1]] * (num_frames - len(indices))
    return indices


def dynamic_degree_interval(fps: float) -> int:
    """``max(1, round(fps / 8))``: VBench's RAFT frame stride (Python round, half to even)."""
    return max(1, round(fps / 8))


def dynamic_degree_frame_indices(vlen: int, fps: float) -> list[int]:
    """Every ``dynamic_degree_interval(fps)``-th frame starting at 0."""
    return list(range(0, vlen, dynamic_degree_interval(fps)))


def middle_frames(frames):
    """VBench's 16 middle frames of a decoded clip."""
    return frames[middle_frame_indices(NUM_MIDDLE_FRAMES, len(frames))]
