"""Dynamic degree, scored exactly as ``vbench/dynamic_degree.py`` (class ``DynamicDegree``).

- frames: every ``max(1, round(fps / 8))``-th decoded frame (``frame_sampling``);
- per consecutive pair: flow magnitude, mean of the ``int(h * w * 0.05)`` largest values, where
  ``h, w`` is the size of the flow the backend returns (RAFT: padded to a multiple of 8);
- ``thres = 6.0 * min(H, W) / 256`` (H, W of the unpadded frame) and
  ``count_num = round(4 * n_frames / 16)`` (Python round, half to even; n_frames after striding);
- the video is dynamic when at least ``count_num`` pairs exceed ``thres`` (strictly greater).
Score = dynamic videos / videos (video level).

Worked examples: 480x720, 49 frames @ 8 fps -> interval 1, thres 11.25, count 12;
768x1360, 81 frames @ 16 fps -> interval 2, 41 frames, thres 18.0, count 10.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from cogvideox_jax.eval.vbench.aggregation import aggregate
from cogvideox_jax.eval.vbench.backends.interfaces import OpticalFlow
from cogvideox_jax.eval.vbench.discovery import PromptVideos
from cogvideox_jax.eval.vbench.frame_sampling import dynamic_degree_frame_indices
from cogvideox_jax.eval.vbench.video_io import DecodedVideo, read_video

TOP_FRACTION = 0.05


def top_flow_magnitude(flow: np.ndarray) -> float:
    """Mean of the top 5% flow magnitudes (``DynamicDegree.get_score``); flow is (h, w, 2)."""
    flow = np.asarray(flow)
    u, v = flow[:, :, 0], flow[:, :, 1]
    rad = np.sqrt(np.square(u) + np.square(v))
    h, w = rad.shape
    cut_index = int(h * w * TOP_FRACTION)
    return float(np.mean(abs(np.sort(-rad.flatten()))[:cut_index]))


def dynamic_params(height: int, width: int, n_frames: int) -> tuple[float, int]:
    """``(thres, count_num)`` of ``DynamicDegree.set_params``."""
    scale = min(height, width)
    return 6.0 * (scale / 256.0), round(4 * (n_frames / 16.0))


def is_dynamic(pair_scores: Sequence[float], thres: float, count_num: int) -> bool:
    """``DynamicDegree.check_move``: True once ``count_num`` scores have exceeded ``thres``."""
    count = 0
    for score in pair_scores:
        if score > thres:
            count += 1
        if count >= count_num:
            return True
    return False


def pad_to_multiple_of_8(frame: np.ndarray) -> np.ndarray:
    """RAFT ``InputPadder`` (sintel mode): replicate-pad H and W up to a multiple of 8, centred."""
    h, w = frame.shape[:2]
    pad_h = (((h // 8) + 1) * 8 - h) % 8
    pad_w = (((w // 8) + 1) * 8 - w) % 8
    pads = [(pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)] + [(0, 0)] * (frame.ndim - 2)
    return np.pad(frame, pads, mode="edge")


def video_pair_scores(frames: np.ndarray, flow_backend: OpticalFlow) -> list[float]:
    return [top_flow_magnitude(flow_backend.flow(a, b)) for a, b in zip(frames[:-1], frames[1:])]


def score_video(video_path: str, frames: np.ndarray, fps: float, flow_backend: OpticalFlow) -> dict:
    """VBench's per-video dict, plus the pair scores and parameters for inspection."""
    frames = frames[dynamic_degree_frame_indices(len(frames), fps)]
    thres, count_num = dynamic_params(frames.shape[1], frames.shape[2], len(frames))
    scores = video_pair_scores(frames, flow_backend)
    return {
        "video_path": video_path,
        "video_results": is_dynamic(scores, thres, count_num),
        "pair_scores": scores,
        "thres": thres,
        "count_num": count_num,
    }


def evaluate_dynamic_degree(
    prompt_videos: Sequence[PromptVideos],
    flow_backend: OpticalFlow,
    load: Callable[[str], DecodedVideo] = read_video,
) -> tuple[float, list[dict]]:
    results = []
    for pv in prompt_videos:
        for path in pv.video_paths:
            video = load(path)
            results.append(score_video(path, video.frames, video.fps, flow_backend))
    return aggregate("dynamic_degree", results), results
