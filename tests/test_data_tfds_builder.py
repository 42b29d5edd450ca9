"""Optional TFDS builder (skipped without tensorflow-datasets): folder → ArrayRecord splits → grain batches."""
import json

import numpy as np
import pytest

pytest.importorskip("tensorflow_datasets")

from cogvideox_jax.data.grain_pipeline import make_train_iterator  # noqa: E402
from cogvideox_jax.data.tfds_builder import TfdsVideoSource, build_tfds, make_tfds_train_iterator  # noqa: E402
from cogvideox_jax_oracles.data_video_files import write_folder  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    write_folder(root, [dict(num_frames=12)] * 4 + [dict(num_frames=12, height=48, width=32)] * 2
                 + [dict(corrupt="random"), dict(corrupt="truncate_stream")])
    return root, build_tfds(root, tmp_path_factory.mktemp("tfds"), buckets="4x32x48,4x48x32", fps=4)


def test_splits_hold_decoded_bucket_clips(built):
    root, builder_dir = built
    src = TfdsVideoSource(builder_dir)
    assert [str(b) for b in src.buckets] == ["4x32x48", "4x48x32"]
    assert len(src) == 6 and np.bincount(src.bucket_of).tolist() == [4, 2]     # broken files skipped at build
    ref = make_train_iterator(root, "4x32x48,4x48x32", 1, seed=0, shard_index=0, shard_count=1, fps=4,
                              shuffle=False, num_epochs=1, read_threads=1, prefetch_batches=1)
    by_prompt = {b["prompt"][0]: b["video"][0] for b in ref}
    for i in range(len(src)):
        ex = src[i]
        assert ex["video"].dtype == np.uint8 and ex["video"].shape == src.buckets[src.bucket_of[i]].shape
        np.testing.assert_allclose(ex["video"] / 127.5 - 1, by_prompt[ex["prompt"]], atol=1e-6)


def test_tfds_batches_resume_and_shard(built):
    _, builder_dir = built
    kw = dict(seed=2, shard_index=0, shard_count=1, read_threads=1, prefetch_batches=2)
    it = make_tfds_train_iterator(builder_dir, 2, **kw)
    a = [next(it) for _ in range(6)]
    assert {x["video"].shape for x in a} == {(2, 4, 32, 48, 3), (2, 4, 48, 32, 3)}
    assert all(x["video"].min() >= -1 and x["video"].max() <= 1 for x in a)
    it2 = make_tfds_train_iterator(builder_dir, 2, **kw)
    next(it2)
    it3 = make_tfds_train_iterator(builder_dir, 2, **kw)
    it3.set_state(json.loads(json.dumps(it2.get_state())))
    for x, y in zip(a[1:], [next(it3) for _ in range(5)]):
        np.testing.assert_array_equal(x["index"], y["index"])
        np.testing.assert_array_equal(x["video"], y["video"])
    shards = [[i for b in make_tfds_train_iterator(builder_dir, 1, seed=0, shard_index=k, shard_count=2, num_epochs=1)
               for i in b["index"].tolist()] for k in range(2)]
    assert not set(shards[0]) & set(shards[1]) and sorted(shards[0] + shards[1]) == list(range(6))
