"""Dynamic degree with the OpenCV DIS backend on synthetic static and moving videos."""
import numpy as np
import pytest

pytest.importorskip("cv2")

from cogvideox_jax.eval.vbench.backends.dis_flow import DISOpticalFlow  # noqa: E402
from cogvideox_jax.eval.vbench.dynamic_degree import score_video, top_flow_magnitude  # noqa: E402


def textured_frames(n, height=96, width=128, shift=0, seed=0):
    """A smooth random texture translated by ``shift`` px per frame (to the right)."""
    import cv2

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3)).astype(np.uint8)
    base = cv2.resize(base, (width + 8, height + 8), interpolation=cv2.INTER_CUBIC)
    base = cv2.GaussianBlur(base, (5, 5), 1.5)[:height, :width]
    return np.stack([np.roll(base, shift * t, axis=1) for t in range(n)])


def test_dis_flow_measures_a_known_translation():
    flow = DISOpticalFlow()
    assert flow.info.comparable_to_vbench is False
    f = textured_frames(2, shift=5)
    uv = flow.flow(f[0], f[1])
    assert uv.shape == (96, 128, 2)
    assert top_flow_magnitude(uv) == pytest.approx(5.0, abs=0.6)
    assert np.median(uv[..., 0]) == pytest.approx(5.0, abs=0.3)


def test_dis_classifies_static_and_moving_videos():
    flow = DISOpticalFlow()
    still = textured_frames(9) + 0  # identical frames
    noise = np.random.default_rng(1).integers(-2, 3, size=still.shape)
    still = np.clip(still.astype(int) + noise, 0, 255).astype(np.uint8)  # plus sensor-like noise
    moving = textured_frames(9, shift=6)
    r_still = score_video("still-0.mp4", still, 8.0, flow)
    r_moving = score_video("moving-0.mp4", moving, 8.0, flow)
    assert r_still["thres"] == 2.25 and r_still["count_num"] == 2  # 6*96/256, round(4*9/16)
    assert r_still["video_results"] is False and max(r_still["pair_scores"]) < 1.0
    assert r_moving["video_results"] is True and min(r_moving["pair_scores"]) > 4.0
    # 16 fps: every 2nd frame is used, so the per-pair motion doubles and 5 frames remain
    r16 = score_video("moving-0.mp4", textured_frames(9, shift=3), 16.0, flow)
    assert len(r16["pair_scores"]) == 4 and r16["count_num"] == 1
    assert np.mean(r16["pair_scores"]) == pytest.approx(6.0, abs=1.0)
