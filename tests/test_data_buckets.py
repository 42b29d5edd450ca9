"""Multi-resolution frame pack: bucket parsing, assignment, per-epoch plans."""
import numpy as np
import pytest

from cogvideox_jax.data.buckets import Bucket, assign_bucket, parse_buckets, plan_epoch


def test_parse_buckets():
    bs = parse_buckets("49x480x720, 49x480x480,13x256x256")
    assert bs == (Bucket(49, 480, 720), Bucket(49, 480, 480), Bucket(13, 256, 256))
    assert bs[0].shape == (49, 480, 720, 3) and str(bs[0]) == "49x480x720"
    assert parse_buckets([(9, 32, 48)]) == (Bucket(9, 32, 48),)
    for bad in ("49x480", "", "9x32x48,9x32x48", "0x32x32"):
        with pytest.raises(ValueError):
            parse_buckets(bad)


def test_assign_by_length_then_aspect():
    bs = parse_buckets("49x480x720,49x480x480,49x720x480,13x480x720,13x480x480")
    # 10 s at 24 fps → 81 frames at 8 fps ≥ 49: the long buckets; aspect picks the shape
    assert assign_bucket(bs, 240, 24, 8, 1080, 1920) == 0
    assert assign_bucket(bs, 240, 24, 8, 1000, 1000) == 1
    assert assign_bucket(bs, 240, 24, 8, 1920, 1080) == 2
    # 3 s → 25 frames at 8 fps: too short for 49, takes 13
    assert assign_bucket(bs, 72, 24, 8, 720, 1280) == 3
    assert assign_bucket(bs, 72, 24, 8, 500, 520) == 4
    # shorter than every bucket: the shortest one, or nothing
    assert assign_bucket(bs, 24, 24, 8, 720, 1280) == 3
    assert assign_bucket(bs, 24, 24, 8, 720, 1280, allow_short=False) is None
    assert assign_bucket(bs, 0, 24, 8, 720, 1280) is None


def test_plan_epoch_one_bucket_per_batch_deterministic():
    rng = np.random.default_rng(0)
    bucket_of = rng.integers(-1, 3, 101)
    plan = plan_epoch(bucket_of, 3, 4, seed=5, epoch=0)
    for b, idx in plan:
        assert idx.shape == (4,) and np.all(bucket_of[idx] == b)
    used = np.concatenate([idx for _, idx in plan])
    assert len(set(used.tolist())) == len(used)                      # no repeats within an epoch
    assert len(plan) == sum(int(np.sum(bucket_of == b)) // 4 for b in range(3))
    again = plan_epoch(bucket_of, 3, 4, seed=5, epoch=0)
    assert all(b1 == b2 and np.array_equal(i1, i2) for (b1, i1), (b2, i2) in zip(plan, again))
    other = plan_epoch(bucket_of, 3, 4, seed=5, epoch=1)
    assert not all(np.array_equal(i1, i2) for (_, i1), (_, i2) in zip(plan, other))
    assert len({b for b, _ in plan}) <= 3
