"""VBench's two ways of turning per-video results into a dimension score.

- video level (human action, dynamic degree): fraction of videos that pass
  (``cor_num / cnt`` in ``human_action.py``; ``np.mean`` of booleans in ``dynamic_degree.py``);
- frame pooled (scene, multiple objects, appearance style): frames of all videos pooled together
  (``success_frame_count / frame_count``; ``sim / cnt`` summed frame by frame), so a long or
  short video weighs by its number of scored frames, not as one vote.

Per-video dicts use VBench's keys (``video_path``, ``video_results`` and the counters below).
"""
from __future__ import annotations

from typing import Sequence

VIDEO_LEVEL = "video_level"
FRAME_POOLED = "frame_pooled"

AGGREGATION: dict[str, str] = {
    "human_action": VIDEO_LEVEL,
    "dynamic_degree": VIDEO_LEVEL,
    "scene": FRAME_POOLED,
    "multiple_objects": FRAME_POOLED,
    "appearance_style": FRAME_POOLED,
}


def video_level_score(video_results: Sequence[dict]) -> float:
    """Mean over videos of ``bool(video_results)``."""
    if not video_results:
        raise ValueError("no videos to aggregate")
    return sum(1 for r in video_results if r["video_results"]) / len(video_results)


def frame_pooled_count_score(video_results: Sequence[dict]) -> float:
    """``sum(success_frame_count) / sum(frame_count)`` over all videos."""
    frames = sum(r["frame_count"] for r in video_results)
    if frames == 0:
        raise ValueError("no frames to aggregate")
    return sum(r["success_frame_count"] for r in video_results) / frames


def frame_pooled_similarity_score(video_results: Sequence[dict]) -> float:
    """Mean of every frame's similarity over all videos (VBench accumulates ``sim += cur_sim``)."""
    total, count = 0.0, 0
    for r in video_results:
        for s in r["frame_results"]:
            total += s
            count += 1
    if count == 0:
        raise ValueError("no frames to aggregate")
    return total / count


def aggregate(dimension: str, video_results: Sequence[dict]) -> float:
    """The dimension score from VBench-shaped per-video results."""
    if dimension == "appearance_style":
        return frame_pooled_similarity_score(video_results)
    if AGGREGATION[dimension] == FRAME_POOLED:
        return frame_pooled_count_score(video_results)
    return video_level_score(video_results)
