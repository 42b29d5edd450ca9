"""Multiple objects, scored exactly as ``vbench/multiple_objects.py``.

Rule: the object string (e.g. "bird and cat") is split on " and " into two names (stripped); a
frame of the 16 middle frames succeeds when both names are in the set of classes GRiT detects in
it. Score = successful frames / frames, pooled over all videos.
"""
from __future__ import annotations

from typing import Callable, Collection, Sequence

from cogvideox_jax.eval.vbench.aggregation import aggregate
from cogvideox_jax.eval.vbench.backends.interfaces import ObjectDetector
from cogvideox_jax.eval.vbench.discovery import PromptVideos, map_videos
from cogvideox_jax.eval.vbench.frame_sampling import middle_frames
from cogvideox_jax.eval.vbench.video_io import DecodedVideo, read_video

MAX_SHORT_SIDE = 768
RESIZED_SHORT_SIDE = 720.0


def parse_object_pair(objects: str) -> tuple[str, str]:
    """``key_a, key_b = objects.split(' and ')`` (exactly two names, else ValueError as in VBench)."""
    key_a, key_b = objects.split(" and ")
    return key_a.strip(), key_b.strip()


def frame_success(objects: str, detected: Collection[str]) -> bool:
    key_a, key_b = parse_object_pair(objects)
    return key_a in detected and key_b in detected


def count_object_successes(objects: str, detections: Sequence[Collection[str]]) -> int:
    return sum(1 for d in detections if frame_success(objects, d))


def grit_resize_shape(height: int, width: int) -> tuple[int, int] | None:
    """Frame size GRiT sees: ``(int(720/m * h), int(720/m * w))`` when ``m = min(h, w) > 768``."""
    m = min(height, width)
    if m > MAX_SHORT_SIDE:
        scale = RESIZED_SHORT_SIDE / m
        return int(scale * height), int(scale * width)
    return None


def score_video(video_path: str, objects: str, detections: Sequence[Collection[str]]) -> dict:
    ok = count_object_successes(objects, detections)
    return {
        "video_path": video_path,
        "video_results": ok / len(detections),
        "success_frame_count": ok,
        "frame_count": len(detections),
    }


def evaluate_multiple_objects(
    prompt_videos: Sequence[PromptVideos],
    detector: ObjectDetector,
    load: Callable[[str], DecodedVideo] = read_video,
) -> tuple[float, list[dict]]:
    results = map_videos(prompt_videos, load, lambda path, objects, frames:
                         score_video(path, objects, detector.detect(middle_frames(frames))))
    return aggregate("multiple_objects", results), results
