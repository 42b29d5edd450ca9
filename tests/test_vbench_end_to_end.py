"""End-to-end over a folder of synthetic mp4 videos: discovery, missing-video warnings, stub
backends, aggregation, results JSON and the Table-1-shaped table; and the CLI entry point."""
import json
import os

import numpy as np
import pytest

from cogvideox_jax.eval.vbench import results as results_lib
from cogvideox_jax.eval.vbench import runner
from cogvideox_jax.eval.vbench.backends import resolve
from cogvideox_jax.eval.vbench.backends.interfaces import BackendInfo, RequiresWeights
from cogvideox_jax.eval.vbench.video_io import read_video, write_video

BRIGHT, DARK = 200, 40
H, W = 96, 128


def _texture(n, shift, seed=0):
    rng = np.random.default_rng(seed)
    base = np.kron(rng.integers(0, 256, size=(H // 8, W // 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    return np.stack([np.roll(base, shift * t, axis=1) for t in range(n)])


def _flat(n, value):
    return np.full((n, H, W, 3), value, np.uint8)


# file name -> frames; each dimension's first two prompts, videos_per_prompt = 2, one file missing
VIDEOS = {
    "A person is riding a bike-0.mp4": lambda: _flat(9, BRIGHT),
    "A person is riding a bike-1.mp4": lambda: _flat(9, BRIGHT),
    "A person is marching-0.mp4": lambda: _flat(9, DARK),  # "-1" missing
    "alley-0.mp4": lambda: _flat(9, BRIGHT),
    "alley-1.mp4": lambda: _flat(9, DARK),
    "amusement park-0.mp4": lambda: _flat(9, DARK),
    "amusement park-1.mp4": lambda: _flat(9, BRIGHT),
    "a person swimming in ocean-0.mp4": lambda: _texture(9, 6),
    "a person swimming in ocean-1.mp4": lambda: _texture(9, 0),
    "a person giving a presentation to a room full of colleagues-0.mp4": lambda: _texture(9, 0, seed=1),
    "a person giving a presentation to a room full of colleagues-1.mp4": lambda: _texture(9, 5, seed=2),
    "a bird and a cat-0.mp4": lambda: _flat(9, BRIGHT),
    "a bird and a cat-1.mp4": lambda: np.concatenate([_flat(5, BRIGHT), _flat(4, DARK)]),
    "a cat and a dog-0.mp4": lambda: _flat(9, BRIGHT),
    "a cat and a dog-1.mp4": lambda: _flat(9, BRIGHT),
    "A beautiful coastal beach in spring, waves lapping on sand, Van Gogh style-0.mp4": lambda: _flat(17, BRIGHT),
    "A beautiful coastal beach in spring, waves lapping on sand, Van Gogh style-1.mp4": lambda: _flat(5, DARK),
    "A beautiful coastal beach in spring, waves lapping on sand, oil painting-0.mp4": lambda: _flat(9, DARK),
    "A beautiful coastal beach in spring, waves lapping on sand, oil painting-1.mp4": lambda: _flat(9, DARK),
}


@pytest.fixture(scope="module")
def videos_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    for name, make in VIDEOS.items():
        write_video(str(d / name), make(), fps=8)
    (d / "alley-2.partial.mp4").write_bytes(b"half")  # a generator's temporary: ignored
    return str(d)


def _bright(frame):
    return frame.mean() > 120


class StubActions:
    info = BackendInfo("stub-umt", True)

    def probabilities(self, frames):
        assert frames.shape[0] == 16
        p = np.full(400, 0.01, np.float32)
        p[0 if _bright(frames[0]) else 5] = 0.9  # class 0 = "riding a bike"
        return p


class StubCaptioner:
    info = BackendInfo("stub-tag2text", True)

    def captions(self, frames):
        return ["a narrow alley with lights" if _bright(f) else "a park at night" for f in frames]


class StubDetector:
    info = BackendInfo("stub-grit", True)

    def detect(self, frames):
        return [{"bird", "cat"} if _bright(f) else {"cat"} for f in frames]


class StubClip:
    info = BackendInfo("stub-clip", True)

    def similarities(self, frames, text):
        assert text in ("Van Gogh style", "oil painting")
        return frames.reshape(len(frames), -1).mean(axis=1) / 1000.0


def test_decoded_videos_roundtrip(videos_dir):
    v = read_video(os.path.join(videos_dir, "alley-0.mp4"))
    assert v.frames.shape == (9, H, W, 3) and v.frames.dtype == np.uint8 and v.fps == pytest.approx(8.0)
    assert abs(float(v.frames.mean()) - BRIGHT) < 3


def test_end_to_end_with_stub_backends(videos_dir, tmp_path, caplog):
    pytest.importorskip("cv2")
    from cogvideox_jax.eval.vbench.backends.dis_flow import DISOpticalFlow

    backends = {
        "human_action": StubActions(),
        "scene": StubCaptioner(),
        "dynamic_degree": DISOpticalFlow(),
        "multiple_objects": StubDetector(),
        "appearance_style": StubClip(),
    }
    res = runner.evaluate(videos_dir, list(backends), backends, videos_per_prompt=2)
    info = res[results_lib.INFO_KEY]
    assert info["num_videos"]["human_action"] == 3
    assert "A person is marching-1.mp4" in info["missing_videos"]["human_action"]
    assert len(info["missing_videos"]["scene"]) == (86 - 2) * 2  # the other prompts: all missing
    assert "alley-2.mp4" not in info["missing_videos"]["scene"]  # only indices < videos_per_prompt
    assert "Missing benchmark videos" in caplog.text

    score, per_video = res["human_action"]
    assert score == pytest.approx(2 / 3)  # video level: riding x2 correct, marching wrong
    assert [v["video_results"] for v in per_video] == [True, True, False]
    # scene, frame pooled over 16 middle frames (9 frames padded): only alley-0 succeeds
    assert res["scene"][0] == pytest.approx(16 / 64)
    assert [v["frame_count"] for v in res["scene"][1]] == [16] * 4
    # dynamic degree (DIS): moving, still, still, moving
    assert [v["video_results"] for v in res["dynamic_degree"][1]] == [True, False, False, True]
    assert res["dynamic_degree"][0] == 0.5
    assert info["backends"]["dynamic_degree"]["comparable_to_vbench"] is False
    # multiple objects: middle indices of 9 frames are 0..8 then 8 x 7; frames 0-4 bright in "-1"
    assert res["multiple_objects"][1][1]["success_frame_count"] == 5
    assert res["multiple_objects"][0] == pytest.approx((16 + 5) / 64)
    # appearance style: every frame, pooled (17 + 5 + 9 + 9 frames), differs from mean of videos
    vids = res["appearance_style"][1]
    assert [len(v["frame_results"]) for v in vids] == [17, 5, 9, 9]
    pooled = sum(sum(v["frame_results"]) for v in vids) / 40
    assert res["appearance_style"][0] == pytest.approx(pooled)
    assert abs(pooled - np.mean([v["video_results"] for v in vids])) > 1e-3

    out = tmp_path / "results.json"
    results_lib.write_results(str(out), res)
    loaded = json.loads(out.read_text())
    assert set(loaded) == set(backends) | {results_lib.INFO_KEY}
    assert all(isinstance(loaded[d], list) and len(loaded[d]) == 2 for d in backends)  # VBench's shape
    table = results_lib.format_table(loaded, "stub", with_paper=True)
    lines = table.splitlines()
    header = [c.strip() for c in lines[0].split("|")[1:-1]]
    assert header == ["Models", "Human Action", "Scene", "Dynamic Degree", "Multiple Objects", "Appearance Style"]
    assert "| stub" in table and "66.67" in table and "50.00*" in table
    assert "CogVideoX (paper)" in table and "not comparable to VBench" in lines[-1]


def test_main_reports_dimensions_without_weights(videos_dir, tmp_path, capsys):
    pytest.importorskip("cv2")
    out = tmp_path / "r.json"
    rc = runner.main([
        "--videos", videos_dir, "--dimensions", "dynamic_degree", "appearance_style", "human_action",
        "--flow-backend", "dis", "--videos-per-prompt", "2", "--out", str(out), "--weights-dir", str(tmp_path),
        "--vbench-json", str(tmp_path / "v.json"),
    ])
    assert rc == 2  # not every dimension could be scored
    res = json.loads(out.read_text())
    assert res["dynamic_degree"][0] == 0.5
    assert res["appearance_style"]["status"] == "requires weights"
    assert any("clip-vit-base-patch32" in n for n in res["appearance_style"]["needs"])
    assert res["human_action"] == {"status": "requires weights", "needs": [f"<weights-dir>/{resolve.VBENCH_WEIGHTS['human_action']}"]}
    strict = json.loads((tmp_path / "v.json").read_text())
    assert list(strict) == ["dynamic_degree"] and strict["dynamic_degree"][0] == 0.5
    printed = capsys.readouterr()
    assert "n/a (requires weights)" in printed.out and "50.00*" in printed.out
    assert "expected videos missing" in printed.err
    assert runner.main(["--videos", videos_dir, "--dimensions", "nope"]) == 1


def test_resolve_never_falls_back_silently(tmp_path, monkeypatch):
    b = resolve.resolve_backend("dynamic_degree", None)
    assert isinstance(b, RequiresWeights) and "dis" in b.note
    raft = tmp_path / resolve.VBENCH_WEIGHTS["dynamic_degree"]
    raft.parent.mkdir(parents=True)
    raft.write_bytes(b"weights")
    monkeypatch.setattr(resolve, "vbench_available", lambda: False)
    b = resolve.resolve_backend("dynamic_degree", str(tmp_path), flow="vbench")
    assert isinstance(b, RequiresWeights) and b.status == "requires backend"
    with pytest.raises(Exception):  # a corrupt weight file is an error, never a fallback
        resolve.resolve_backend("dynamic_degree", str(tmp_path), flow="auto")
    monkeypatch.setattr(resolve, "vbench_available", lambda: True)
    b = resolve.resolve_backend("dynamic_degree", str(tmp_path), flow="vbench", device="cpu")
    assert b.info.comparable_to_vbench and b.weights == str(raft)
