"""Which videos to generate for a VBench suite, resumable (the pure part of ``eval generate``).

Each prompt gets ``videos_per_prompt`` files named ``{prompt}-{i}.mp4`` (VBench's names). A job
whose final file already exists (non-empty) is skipped, so an interrupted run resumes. Writers must
write to ``job.tmp_path`` (same folder, so the rename is atomic) and call ``finish(job)``, which
``os.replace``s it into place: a half-written file keeps its temporary name and is neither counted
by ``discovery`` nor taken as done on resume (stale temporaries are overwritten).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence

from cogvideox_jax.eval.vbench.discovery import VIDEO_EXTENSION, VIDEOS_PER_PROMPT, video_file_name

TMP_SUFFIX = ".partial"


@dataclasses.dataclass(frozen=True)
class GenerationJob:
    prompt: str
    index: int  # 0 .. videos_per_prompt - 1; also a natural per-video seed offset
    path: str  # final file
    tmp_path: str  # write here first


def is_complete(path: str) -> bool:
    return os.path.isfile(path) and os.path.getsize(path) > 0


def make_job(prompt: str, index: int, out_dir: str, extension: str = VIDEO_EXTENSION) -> GenerationJob:
    path = os.path.join(out_dir, video_file_name(prompt, index, extension))
    # Keep the real extension last so encoders that infer the container from it still work.
    root, ext = os.path.splitext(path)
    return GenerationJob(prompt, index, path, f"{root}{TMP_SUFFIX}{ext}")


def plan_generation(
    prompts: Sequence[str],
    videos_per_prompt: int = VIDEOS_PER_PROMPT,
    out_dir: str = ".",
    extension: str = VIDEO_EXTENSION,
) -> list[GenerationJob]:
    """Jobs for every (prompt, index) whose final file does not exist yet; prompts de-duplicated."""
    if videos_per_prompt < 1:
        raise ValueError("videos_per_prompt must be >= 1")
    jobs = []
    for prompt in dict.fromkeys(prompts):
        for i in range(videos_per_prompt):
            job = make_job(prompt, i, out_dir, extension)
            if not is_complete(job.path):
                jobs.append(job)
    return jobs


def finish(job: GenerationJob) -> str:
    """Atomically move a fully written ``tmp_path`` to ``path``."""
    if not is_complete(job.tmp_path):
        raise FileNotFoundError(f"{job.tmp_path} is missing or empty; nothing to finish")
    os.replace(job.tmp_path, job.path)
    return job.path
