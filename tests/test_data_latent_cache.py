"""Latent cache: precompute with stand-in encoders → ArrayRecord shards → grain reader batches."""
import json

import numpy as np
import pytest

from cogvideox_jax.data.latent_cache import (LatentCacheSource, LatentCacheWriter, iterate_folder_once,
                                             make_latent_iterator, precompute_records, read_index)
from cogvideox_jax_oracles.data_video_files import write_folder

LOGVAR = float(np.log(0.25))


def fake_encode_video(video):
    """(B,T,H,W,3) → posterior mean (B, T/2, H/8, W/8, 4) from pooled pixels, constant logvar."""
    b, t, h, w, _ = video.shape
    pooled = video.reshape(b, t // 2, 2, h // 8, 8, w // 8, 8, 3).mean(axis=(2, 4, 6))
    mean = np.concatenate([pooled, pooled[..., :1] * 2], -1).astype(np.float32)
    return mean, np.full_like(mean, LOGVAR)


def fake_encode_text(prompts):
    return np.stack([np.full((3, 5), len(p), np.float32) for p in prompts])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    write_folder(root, [dict(num_frames=12)] * 5 + [dict(num_frames=12, height=48, width=32)] * 3
                 + [dict(corrupt="random")])
    out = tmp_path_factory.mktemp("cache") / "c"
    batches = list(iterate_folder_once(root, "4x32x48,4x48x32", fps=4, batch_size=2))
    assert [len(b["prompt"]) for b in batches] == [2, 2, 1, 2, 1]      # per bucket, remainder kept
    index = precompute_records(fake_encode_video, fake_encode_text, batches, out, num_shards=2,
                               metadata={"scaling_factor": 0.7})
    return out, batches, index


def test_index_and_records_round_trip(cache):
    out, batches, index = cache
    assert index["num_records"] == 8 and [s["num_records"] for s in index["shards"]] == [4, 4]
    assert index["latent_shapes"][:5] == [[2, 4, 6, 4]] * 5 and index["latent_shapes"][5:] == [[2, 6, 4, 4]] * 3
    assert index["scaling_factor"] == 0.7
    src = LatentCacheSource(out)
    assert len(src) == 8
    flat_videos = [v for b in batches for v in b["video"]]
    flat_prompts = [p for b in batches for p in b["prompt"]]
    for i in (0, 3, 5, 7):
        rec = src[i]
        mean, logvar = fake_encode_video(flat_videos[i][None])
        np.testing.assert_array_equal(rec["latent_mean"], mean[0])
        np.testing.assert_array_equal(rec["latent_logvar"], logvar[0])
        assert rec["prompt"] == flat_prompts[i] and rec["video"].endswith(".mp4")
        np.testing.assert_array_equal(rec["text_emb"], fake_encode_text([flat_prompts[i]])[0])
    with pytest.raises(FileExistsError):
        LatentCacheWriter(out)


def test_latent_batches_deterministic_resumable_and_scaled(cache):
    out, _, _ = cache
    src = LatentCacheSource(out)
    kw = dict(scaling_factor=0.7, seed=1, shard_index=0, shard_count=1, read_threads=1, prefetch_batches=2)
    it = make_latent_iterator(out, 2, **kw)
    a = [next(it) for _ in range(8)]        # 2 + 1 batches per epoch: several epochs
    shapes = {x["latents"].shape for x in a}
    assert shapes == {(2, 2, 4, 6, 4), (2, 2, 6, 4, 4)}
    for x in a:
        assert x["text_emb"].shape == (2, 3, 5) and x["latents"].dtype == np.float32
        means = np.stack([src[int(i)]["latent_mean"] for i in x["index"]])
        noise = x["latents"] / 0.7 - means
        assert 0.3 < noise.std() < 0.7 and not np.allclose(noise, 0)     # exp(logvar / 2) = 0.5
    it2 = make_latent_iterator(out, 2, **kw)
    [next(it2) for _ in range(3)]
    state = json.loads(json.dumps(it2.get_state()))
    it3 = make_latent_iterator(out, 2, **kw)
    it3.set_state(state)
    for x, y in zip(a[3:], [next(it3) for _ in range(5)]):
        np.testing.assert_array_equal(x["index"], y["index"])
        np.testing.assert_array_equal(x["latents"], y["latents"])
    mean_only = next(make_latent_iterator(out, 2, **kw, sample_posterior=False))
    np.testing.assert_allclose(mean_only["latents"],
                               0.7 * np.stack([src[int(i)]["latent_mean"] for i in mean_only["index"]]), rtol=1e-6)


def test_two_shards_disjoint(cache):
    out, _, _ = cache
    got = []
    for k in range(2):
        it = make_latent_iterator(out, 1, scaling_factor=1.0, seed=0, shard_index=k, shard_count=2, num_epochs=1,
                                  read_threads=1)
        got.append([int(b["index"][0]) for b in it])
    assert not set(got[0]) & set(got[1]) and len(got[0]) == len(got[1]) == 2 + 1   # 5 // 2, 3 // 2 global


def test_read_index_rejects_other_dirs(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_index(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="format"):
        read_index(tmp_path)
