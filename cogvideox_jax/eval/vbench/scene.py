"""Scene, scored exactly as ``vbench/scene.py``.

Rule: each of the 16 middle frames is captioned; a frame succeeds when every space-separated word
of the scene string is a *substring* of the caption (so "bar" matches "barn", and a three-word
scene needs all three). Score = successful frames / frames, pooled over all videos.
"""
from __future__ import annotations

from typing import Callable, Sequence

from cogvideox_jax.eval.vbench.aggregation import aggregate
from cogvideox_jax.eval.vbench.backends.interfaces import Captioner
from cogvideox_jax.eval.vbench.discovery import PromptVideos, map_videos
from cogvideox_jax.eval.vbench.frame_sampling import middle_frames
from cogvideox_jax.eval.vbench.video_io import DecodedVideo, read_video


def scene_frame_success(scene: str, caption: str) -> bool:
    """``all(q in caption for q in scene.split(' '))`` (substring test, no tokenisation)."""
    flags = [q in caption for q in scene.split(" ")]
    return len(flags) == sum(flags)


def count_scene_successes(scene: str, captions: Sequence[str]) -> int:
    return sum(1 for c in captions if scene_frame_success(scene, c))


def score_video(video_path: str, scene: str, captions: Sequence[str]) -> dict:
    ok = count_scene_successes(scene, captions)
    return {
        "video_path": video_path,
        "video_results": ok / len(captions),
        "success_frame_count": ok,
        "frame_count": len(captions),
    }


def evaluate_scene(
    prompt_videos: Sequence[PromptVideos],
    captioner: Captioner,
    load: Callable[[str], DecodedVideo] = read_video,
) -> tuple[float, list[dict]]:
    results = map_videos(prompt_videos, load, lambda path, scene, frames:
                         score_video(path, scene, captioner.captions(middle_frames(frames))))
    return aggregate("scene", results), results
