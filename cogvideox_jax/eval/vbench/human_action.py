"""Human action, scored exactly as ``vbench/human_action.py``.

Rule: the label is parsed from the file name; the UMT classifier's sigmoid probabilities are
ranked, the top 5 are rounded to 4 decimals (Python ``round``) and kept when ``>= 0.85``; a video is
correct when any kept Kinetics-400 class name equals the label. Score = correct videos / videos
(video level). Note the rounding: a probability of 0.84996 rounds to 0.85 and passes.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from cogvideox_jax.eval.vbench.aggregation import aggregate
from cogvideox_jax.eval.vbench.backends.interfaces import ActionClassifier
from cogvideox_jax.eval.vbench.discovery import PromptVideos, map_videos
from cogvideox_jax.eval.vbench.frame_sampling import middle_frames
from cogvideox_jax.eval.vbench.prompt_suites import load_kinetics400_categories
from cogvideox_jax.eval.vbench.video_io import DecodedVideo, read_video

TOP_K = 5
THRESHOLD = 0.85
ROUND_DECIMALS = 4


def action_label_from_path(video_path: str) -> str:
    """``video_path.split('/')[-1].lower().split('-')[0].split("person is ")[-1].split('_')[0]``."""
    return video_path.split("/")[-1].lower().split("-")[0].split("person is ")[-1].split("_")[0]


def kept_categories(probabilities: np.ndarray, categories: Sequence[str]) -> list[str]:
    """Kinetics names among the top 5 whose probability, rounded to 4 decimals, is >= 0.85."""
    probs = np.asarray(probabilities).reshape(-1)
    if probs.shape[0] != len(categories):
        raise ValueError(f"{probs.shape[0]} probabilities for {len(categories)} categories")
    top = np.argsort(-probs, kind="stable")[:TOP_K]
    return [categories[int(i)] for i in top if round(float(probs[i]), ROUND_DECIMALS) >= THRESHOLD]


def is_action_correct(probabilities: np.ndarray, label: str, categories: Sequence[str]) -> bool:
    return any(cat == label for cat in kept_categories(probabilities, categories))


def score_video(video_path: str, probabilities: np.ndarray, categories: Sequence[str]) -> dict:
    """VBench's per-video dict."""
    flag = is_action_correct(probabilities, action_label_from_path(video_path), categories)
    return {"video_path": video_path, "video_results": flag, "cor_num_per_video": int(flag)}


def evaluate_human_action(
    prompt_videos: Sequence[PromptVideos],
    classifier: ActionClassifier,
    load: Callable[[str], DecodedVideo] = read_video,
) -> tuple[float, list[dict]]:
    categories = load_kinetics400_categories()
    results = map_videos(prompt_videos, load, lambda path, _aux, frames:
                         score_video(path, classifier.probabilities(middle_frames(frames)), categories))
    return aggregate("human_action", results), results
