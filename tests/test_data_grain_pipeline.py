"""The grain video pipeline end to end on tiny mp4s: shapes, determinism, resume, corrupt files,
buckets, per-process shards."""
import json
import logging

import chex
import numpy as np
import pytest

from cogvideox_jax.data.grain_pipeline import make_train_iterator
from cogvideox_jax_oracles.data_video_files import gray_level, write_folder

BUCKETS = "4x32x48,4x48x32,2x32x32"
LIGHT = dict(read_threads=2, prefetch_batches=2)   # little read-ahead: the machine is shared


def make_iter(root, buckets, batch_size, **kw):
    return make_train_iterator(root, buckets, batch_size, **{**LIGHT, **kw})


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """12 landscape + 6 portrait 12-frame videos, 4 short square ones, and 3 broken files."""
    root = tmp_path_factory.mktemp("videos")
    specs = ([dict(num_frames=12)] * 12 + [dict(num_frames=12, height=48, width=32)] * 6
             + [dict(num_frames=6, height=40, width=40, fps=12)] * 4
             + [dict(corrupt="random"), dict(num_frames=12, corrupt="truncate"),
                dict(num_frames=12, corrupt="truncate_stream")])
    write_folder(root, specs)
    return root


def _take(it, n):
    return [next(it) for _ in range(n)]


def _same(a, b):
    assert a["prompt"] == b["prompt"] and a["bucket"] == b["bucket"]
    np.testing.assert_array_equal(a["index"], b["index"])
    np.testing.assert_array_equal(a["video"], b["video"])


def test_batches_shapes_range_and_buckets(folder):
    it = make_iter(folder, BUCKETS, 2, seed=0, shard_index=0, shard_count=1, fps=4, num_epochs=2)
    batches = list(it)
    shapes = {b["video"].shape for b in batches}
    assert shapes <= {(2, 4, 32, 48, 3), (2, 4, 48, 32, 3), (2, 2, 32, 32, 3)} and len(shapes) == 3
    for b in batches:
        chex.assert_type(b["video"], np.float32)
        assert b["video"].min() >= -1.0 and b["video"].max() <= 1.0
        assert len(b["prompt"]) == 2 and all(p.startswith("video number ") for p in b["prompt"])
        if b["video"].shape[1] == 4:   # 12 frames at 12 fps read at 4 fps: frames 0, 3, 6, 9
            np.testing.assert_allclose(b["video"].mean(axis=(0, 2, 3, 4)),
                                       [gray_level(i) / 127.5 - 1 for i in (0, 3, 6, 9)], atol=0.03)
    # per epoch: 12 landscape → 6, but one landscape file is truncated mid-stream (probes fine, it is in the
    # plan and gets replaced), 6 portrait → 3, 4 square → 2 batches
    assert len(batches) == 2 * (6 + 3 + 2)
    counts = it.skip_counts()
    assert counts["unreadable_videos"] == 2 and counts["dropped_batches"] == 0
    assert counts["decode_failures"] >= 1 and it.num_skipped == 2 + counts["decode_failures"]
    assert all(22 + 2 not in b["index"].tolist() for b in batches)   # the stream-truncated file never comes out


def test_deterministic_and_resume_mid_epoch(folder):
    kw = dict(seed=3, shard_index=0, shard_count=1, fps=4)
    a = _take(make_iter(folder, BUCKETS, 2, **kw), 13)   # 11 batches per epoch: crosses into the 2nd
    b_it = make_iter(folder, BUCKETS, 2, **kw)
    b = _take(b_it, 4)
    state = json.loads(json.dumps(b_it.get_state()))             # JSON round trip, like the checkpointer
    for x, y in zip(a, b):
        _same(x, y)
    resumed = make_iter(folder, BUCKETS, 2, **kw)
    resumed.set_state(state)
    for x, y in zip(a[4:], _take(resumed, 9)):
        _same(x, y)
    assert resumed.num_decode_failures >= b_it.num_decode_failures
    other = _take(make_iter(folder, BUCKETS, 2, **{**kw, "seed": 4}), 4)
    assert any(not np.array_equal(x["index"], y["index"]) for x, y in zip(a, other))
    with pytest.raises(ValueError, match="seed"):
        make_iter(folder, BUCKETS, 2, **{**kw, "seed": 4}).set_state(state)


def test_two_shards_are_disjoint_and_cover_the_epoch(folder):
    per_shard, its = [], []
    for k in range(2):
        it = make_iter(folder, "4x32x48,4x48x32", 3, seed=1, shard_index=k, shard_count=2, fps=4,
                       num_epochs=1, allow_short=False)
        per_shard.append(list(it))
        its.append(it)
    # 13 landscape (incl. the stream-truncated one) // 6 → 2, 6 portrait // 6 → 1; short squares unassigned
    assert len(per_shard[0]) == len(per_shard[1]) == 2 + 1
    for b0, b1 in zip(*per_shard):                                # same bucket at the same step
        assert b0["video"].shape == b1["video"].shape == (3, *b0["video"].shape[1:])
    # the plans (what each shard is asked to read) are disjoint and cover 18 of the 19 assigned videos
    planned = [np.concatenate([it.plan[i]["indices"] for i in range(len(it.plan))]).tolist() for it in its]
    assert not set(planned[0]) & set(planned[1]) and len(set(planned[0]) | set(planned[1])) == 18
    # delivered: equal to the plan except where a broken video was replaced by another of its bucket
    got = [np.concatenate([b["index"] for b in s]).tolist() for s in per_shard]
    failures = sum(it.num_decode_failures for it in its)
    assert 24 not in got[0] + got[1]
    assert len(set(got[0]) & set(got[1])) <= failures
    assert sum(a != b for p, g in zip(planned, got) for a, b in zip(p, g)) == failures
    assert set(got[0]) | set(got[1]) <= set(range(18)) and len(set(got[0]) | set(got[1])) >= 17


def test_corrupt_videos_skipped_with_warning(tmp_path, caplog):
    write_folder(tmp_path, [dict(num_frames=12)] * 3 + [dict(corrupt="random"), dict(corrupt="truncate_stream")],
                 fmt="jsonl")
    with caplog.at_level(logging.WARNING):
        it = make_iter(tmp_path, "4x32x48", 1, seed=0, shard_index=0, shard_count=1, fps=4,
                                 num_epochs=3)
        batches = list(it)
    assert {int(b["index"][0]) for b in batches} <= {0, 1, 2}
    assert len(batches) == 3 * 4                 # 4 planned per epoch (truncated one replaced), none dropped
    assert it.skip_counts()["unreadable_videos"] == 1
    assert it.skip_counts()["decode_failures"] == 3   # the truncated stream, once per epoch
    assert "v003.mp4" in caplog.text and "v004.mp4" in caplog.text


def test_all_broken_bucket_drops_batches(tmp_path):
    write_folder(tmp_path, [dict(num_frames=12)] * 2 + [dict(corrupt="truncate_stream", height=48, width=32)] * 2)
    it = make_iter(tmp_path, "4x32x48,4x48x32", 2, seed=0, shard_index=0, shard_count=1, fps=4,
                             num_epochs=2)
    batches = list(it)
    assert len(batches) == 2 and all(b["video"].shape == (2, 4, 32, 48, 3) for b in batches)
    assert it.skip_counts()["dropped_batches"] == 2


@pytest.mark.slow
def test_worker_processes_resume_and_count(tmp_path):
    """grain worker processes: same batches as in-process decoding, JSON state resumes, counts cross processes."""
    write_folder(tmp_path, [dict(num_frames=12)] * 6 + [dict(corrupt="truncate_stream")])
    kw = dict(seed=0, shard_index=0, shard_count=1, fps=4)
    ref = _take(make_iter(tmp_path, "4x32x48", 2, **kw), 6)
    with make_iter(tmp_path, "4x32x48", 2, num_workers=2, **kw) as it:
        got = _take(it, 2)
        state = json.loads(json.dumps(it.get_state()))
    with make_iter(tmp_path, "4x32x48", 2, num_workers=2, **kw) as resumed:
        resumed.set_state(state)
        got += _take(resumed, 4)
        assert resumed.num_decode_failures >= 1
    for x, y in zip(ref, got):
        _same(x, y)


def test_images_offsets_and_index_cache(tmp_path):
    """images.txt (image-to-video) batches, seeded random clip offsets, and the probe cache file."""
    import imageio.v3 as iio

    root = tmp_path / "d"
    write_folder(root, [dict(num_frames=12)] * 2)
    (root / "images").mkdir()
    for n in range(2):
        iio.imwrite(root / "images" / f"{n}.png", np.full((64, 96, 3), 40 + 100 * n, np.uint8))
    (root / "images.txt").write_text("images/0.png\nimages/1.png\n")
    cache = str(tmp_path / "probe.json")
    kw = dict(seed=0, shard_index=0, shard_count=1, fps=6, num_epochs=1, shuffle=False, index_cache=cache)
    (b,) = list(make_iter(root, "3x32x48", 2, **kw))
    assert b["image"].shape == (2, 32, 48, 3) and b["image"].dtype == np.float32
    np.testing.assert_allclose(b["image"][:, 0, 0, 0], [40 / 127.5 - 1, 140 / 127.5 - 1], atol=1e-6)
    # 12 frames at 12 fps read at 6 fps: 3 frames from the start, stride 2
    np.testing.assert_allclose(b["video"][0].mean(axis=(1, 2, 3)), [gray_level(i) / 127.5 - 1 for i in (0, 2, 4)],
                               atol=0.03)
    assert len(json.load(open(cache))) == 2
    (raw,) = list(make_iter(root, "3x32x48", 2, **kw, normalize=False))
    assert raw["video"].dtype == np.uint8 and raw["image"].dtype == np.uint8
    np.testing.assert_allclose(raw["video"] / 127.5 - 1, b["video"], atol=1e-6)
    offs = [list(make_iter(root, "3x32x48", 2, **kw, random_offset=True))[0]["video"] for _ in range(2)]
    np.testing.assert_array_equal(offs[0], offs[1])                       # seeded
    starts = np.rint((offs[0][:, 0].mean(axis=(1, 2, 3)) + 1) * 127.5)
    assert not np.allclose(starts, gray_level(0), atol=3)                   # not both from frame 0


def test_default_shard_is_the_jax_process():
    from cogvideox_jax.data.grain_pipeline import _resolve_shard

    assert _resolve_shard(None, None) == (0, 1)          # one JAX process here
    assert _resolve_shard(1, 4) == (1, 4)
    with pytest.raises(ValueError):
        _resolve_shard(1, None)
