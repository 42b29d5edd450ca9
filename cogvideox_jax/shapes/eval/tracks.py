"""Centroid tracks of the object masks, motion direction and temporal consistency."""
from __future__ import annotations

import numpy as np

from cogvideox_jax.shapes.eval.shape_moments import MIN_AREA


def centroid_track(masks: np.ndarray) -> np.ndarray:
    """``(T, 2)`` (x, y) pixel-center centroids; NaN rows where the object is not detected."""
    track = np.full((masks.shape[0], 2), np.nan)
    for t, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if len(xs) >= MIN_AREA:
            track[t] = (xs.mean() + 0.5, ys.mean() + 0.5)
    return track


def net_displacement(track: np.ndarray) -> np.ndarray:
    """(dx, dy) over the whole clip from a least-squares line through the detected centroids."""
    t = np.arange(len(track), dtype=np.float64)
    ok = ~np.isnan(track[:, 0])
    if ok.sum() < 2:
        return np.zeros(2)
    tt = t[ok] - t[ok].mean()
    slope = (tt[:, None] * (track[ok] - track[ok].mean(0))).sum(0) / max((tt * tt).sum(), 1e-9)
    return slope * (len(track) - 1)


def motion_direction(track: np.ndarray, height: int, width: int, still_fraction: float = 0.1) -> str | None:
    """"left"/"right"/"up"/"down" by the dominant axis of the net displacement, "still" when it is below
    ``still_fraction`` of the frame side, ``None`` when the object is found in fewer than two frames."""
    if (~np.isnan(track[:, 0])).sum() < 2:
        return None
    dx, dy = net_displacement(track)
    if np.hypot(dx / width, dy / height) < still_fraction:
        return "still"
    if abs(dx) / width >= abs(dy) / height:
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def temporal_consistency(masks: np.ndarray, track: np.ndarray, colors: list, shapes: list,
                         max_jump_fraction: float = 0.2, max_area_ratio: float = 1.5) -> dict:
    """Frame-to-frame stability of the object.

    ``score``: fraction of consecutive frame pairs in which the object is detected in both, keeps its
    color and shape label, changes area by at most ``max_area_ratio`` and moves its centroid by at most
    ``max_jump_fraction`` of the frame side. Also ``detection_rate``, ``color_stability`` /
    ``shape_stability`` (fraction of detected frames agreeing with the majority label) and
    ``area_cv`` (coefficient of variation of the area over detected frames).
    """
    t_len, h, w = masks.shape
    areas = masks.reshape(t_len, -1).sum(1).astype(np.float64)
    det = ~np.isnan(track[:, 0])

    def stability(labels):
        vals = [v for v, d in zip(labels, det) if d and v is not None]
        if not vals:
            return 0.0
        _, counts = np.unique(vals, return_counts=True)
        return float(counts.max()) / float(det.sum())

    ok_pairs = []
    for t in range(t_len - 1):
        if not (det[t] and det[t + 1]):
            ok_pairs.append(False)
            continue
        ratio = max(areas[t], areas[t + 1]) / max(min(areas[t], areas[t + 1]), 1.0)
        jump = np.hypot(*(track[t + 1] - track[t])) / min(h, w)
        ok_pairs.append(bool(colors[t] == colors[t + 1] and shapes[t] == shapes[t + 1]
                             and ratio <= max_area_ratio and jump <= max_jump_fraction))
    a = areas[det]
    return {"score": float(np.mean(ok_pairs)) if ok_pairs else float(det.all()),
            "detection_rate": float(det.mean()),
            "color_stability": stability(colors),
            "shape_stability": stability(shapes),
            "area_cv": float(a.std() / a.mean()) if len(a) else float("nan")}
