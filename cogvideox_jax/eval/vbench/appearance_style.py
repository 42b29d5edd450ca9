"""Appearance style, scored exactly as ``vbench/appearance_style.py``.

Rule: every frame (no sub-sampling) against the style phrase alone (e.g. "Van Gogh style");
per-frame similarity ``logits_per_text / 100 = exp(logit_scale) * cos(image, text) / 100`` (for
OpenAI CLIP ``exp(logit_scale) == 100``, i.e. the cosine). Per video: the mean of its frames; the
score is the mean over all frames of all videos (pooled). The paper reports it x100.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from cogvideox_jax.eval.vbench.aggregation import aggregate
from cogvideox_jax.eval.vbench.backends.interfaces import ImageTextSimilarity
from cogvideox_jax.eval.vbench.discovery import PromptVideos, map_videos
from cogvideox_jax.eval.vbench.video_io import DecodedVideo, read_video


def clip_frame_similarities(image_embeds: np.ndarray, text_embed: np.ndarray, logit_scale_exp: float) -> np.ndarray:
    """``logits_per_text / 100`` for each frame from unnormalised CLIP embeddings."""
    img = np.asarray(image_embeds, np.float64)
    txt = np.asarray(text_embed, np.float64).reshape(-1)
    img = img / np.linalg.norm(img, axis=-1, keepdims=True)
    txt = txt / np.linalg.norm(txt)
    return logit_scale_exp * (img @ txt) / 100.0


def score_video(video_path: str, frame_similarities: Sequence[float]) -> dict:
    sims = [float(s) for s in frame_similarities]
    return {
        "video_path": video_path,
        "video_results": float(np.mean(sims)),
        "frame_results": sims,
        "cur_sim": sims[-1],
    }


def evaluate_appearance_style(
    prompt_videos: Sequence[PromptVideos],
    similarity: ImageTextSimilarity,
    load: Callable[[str], DecodedVideo] = read_video,
) -> tuple[float, list[dict]]:
    results = map_videos(prompt_videos, load, lambda path, style, frames:
                         score_video(path, similarity.similarities(frames, style)))
    return aggregate("appearance_style", results), results
