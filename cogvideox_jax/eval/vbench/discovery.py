"""Find the ``{prompt}-{i}.mp4`` files VBench expects (``VBench.build_full_info_json``, standard mode).

For every prompt of a dimension, indices ``0 .. videos_per_prompt - 1`` are looked up by exact file
name in ``videos_dir``; a missing one is warned about ("Missing benchmark videos can lead to unfair
evaluation result") and skipped, as VBench does. Files still being written by the generator carry a
temporary name (``generation_plan.TMP_SUFFIX``) and are therefore never counted.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Iterable

from cogvideox_jax.eval.vbench.prompt_suites import PromptEntry, load_suite

log = logging.getLogger(__name__)

VIDEOS_PER_PROMPT = 5
VIDEO_EXTENSION = ".mp4"


def video_file_name(prompt: str, index: int, extension: str = VIDEO_EXTENSION) -> str:
    """VBench's file name for the ``index``-th video of ``prompt``: ``f"{prompt}-{index}{ext}"``."""
    if "/" in prompt or "\x00" in prompt:
        raise ValueError(f"prompt cannot be a file name: {prompt!r}")
    return f"{prompt}-{index}{extension}"


@dataclasses.dataclass(frozen=True)
class PromptVideos:
    entry: PromptEntry
    video_paths: tuple[str, ...]
    missing: tuple[str, ...]  # expected file names not found


def discover(
    videos_dir: str,
    entries: Iterable[PromptEntry],
    videos_per_prompt: int = VIDEOS_PER_PROMPT,
    extension: str = VIDEO_EXTENSION,
) -> list[PromptVideos]:
    """Match the expected file names of ``entries`` against the files in ``videos_dir``."""
    if not os.path.isdir(videos_dir):
        raise FileNotFoundError(f"videos directory {videos_dir!r} does not exist")
    present = set(os.listdir(videos_dir))
    out = []
    for entry in entries:
        found, missing = [], []
        for i in range(videos_per_prompt):
            name = video_file_name(entry.prompt, i, extension)
            if name in present and os.path.isfile(os.path.join(videos_dir, name)):
                found.append(os.path.join(videos_dir, name))
            else:
                missing.append(name)
                log.warning(
                    "WARNING!!! This required video is not found! Missing benchmark videos can lead to "
                    "unfair evaluation result. The missing video is: %s",
                    name,
                )
        out.append(PromptVideos(entry, tuple(found), tuple(missing)))
    return out


def discover_dimension(
    videos_dir: str, dimension: str, videos_per_prompt: int = VIDEOS_PER_PROMPT, extension: str = VIDEO_EXTENSION
) -> list[PromptVideos]:
    return discover(videos_dir, load_suite(dimension), videos_per_prompt, extension)


def missing_names(found: Iterable[PromptVideos]) -> list[str]:
    return [name for pv in found for name in pv.missing]


def num_videos(found: Iterable[PromptVideos]) -> int:
    return sum(len(pv.video_paths) for pv in found)


def map_videos(prompt_videos, load, score_one) -> list[dict]:
    """``score_one(path, aux, frames)`` for every video of every prompt, in order (the loop every
    dimension shares; ``aux`` is the prompt's auxiliary info: scene, object pair, style...)."""
    return [score_one(path, pv.entry.aux, load(path).frames) for pv in prompt_videos for path in pv.video_paths]
