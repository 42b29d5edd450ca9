"""Precomputed latents + text embeddings as ArrayRecord shards, and a grain reader for training.

Layout of a cache directory::

    index.json                        {"format", "num_records", "shards": [{"file", "num_records"}],
                                       "latent_shapes": [[t, h, w, C], ...] (per record, in order), ...}
    latents-00000-of-00002.array_record
    latents-00001-of-00002.array_record

Each record is a msgpack dict (``flax.serialization``) of::

    latent_mean, latent_logvar   (t, h, w, C)  VAE posterior (unscaled), channels-last
    text_emb                     (L, D)        T5 encoder output
    prompt, video                str
    + any extra arrays the writer got (e.g. image latents for image-to-video)

Records are written in order, round-robin over shards; record ``i`` of the cache is record
``i // num_shards`` of shard ``i % num_shards``. The reader samples ``z = mean + exp(logvar / 2) * eps``
(seeded per step and record, so resumed runs draw the same noise) and multiplies by the VAE
``scaling_factor``, giving the trainer's ``{"latents": (B,t,h,w,C), "text_emb": (B,L,D)}`` batches;
batches are grouped by latent shape (one compiled step per shape), as in the pixel pipeline.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Callable, Iterable, Sequence

import grain
import numpy as np
from flax import serialization

from cogvideox_jax.data.grain_pipeline import BatchPlanSource, _resolve_shard

log = logging.getLogger(__name__)

FORMAT = "cogvideox_jax.latent_cache/v1"
INDEX = "index.json"


def _shard_name(k: int, n: int) -> str:
    return f"latents-{k:05d}-of-{n:05d}.array_record"


class LatentCacheWriter:
    """``with LatentCacheWriter(out_dir, num_shards) as w: w.write(latent_mean=..., ...)``."""

    def __init__(self, out_dir: str, num_shards: int = 1, dtype=np.float32, metadata: dict | None = None):
        from array_record.python import array_record_module

        if num_shards < 1:
            raise ValueError("num_shards must be >= 1")
        self.out_dir, self.num_shards, self.dtype = os.fspath(out_dir), num_shards, np.dtype(dtype)
        os.makedirs(self.out_dir, exist_ok=True)
        if os.path.exists(os.path.join(self.out_dir, INDEX)):
            raise FileExistsError(f"{self.out_dir} already holds a latent cache")
        self._writers = [array_record_module.ArrayRecordWriter(
            os.path.join(self.out_dir, _shard_name(k, num_shards)), "group_size:1") for k in range(num_shards)]
        self._counts = [0] * num_shards
        self.shapes: list[list[int]] = []
        self.metadata = dict(metadata or {})

    def write(self, *, latent_mean, latent_logvar, text_emb, prompt: str, video: str = "", **extra) -> None:
        mean, logvar = np.asarray(latent_mean), np.asarray(latent_logvar)
        if mean.shape != logvar.shape or mean.ndim != 4:
            raise ValueError(f"latent mean/logvar must be equal (t, h, w, C) shapes, got {mean.shape} / {logvar.shape}")
        text = np.asarray(text_emb)
        if text.ndim != 2:
            raise ValueError(f"text_emb must be (L, D), got {text.shape}")
        rec = {"latent_mean": mean.astype(self.dtype), "latent_logvar": logvar.astype(self.dtype),
               "text_emb": text.astype(self.dtype), "prompt": str(prompt), "video": str(video)}
        for k, v in extra.items():
            rec[k] = v if isinstance(v, str) else np.asarray(v)
        k = len(self.shapes) % self.num_shards
        self._writers[k].write(serialization.msgpack_serialize(rec))
        self._counts[k] += 1
        self.shapes.append(list(mean.shape))

    def close(self) -> dict:
        for w in self._writers:
            w.close()
        index = {"format": FORMAT, "num_records": len(self.shapes),
                 "shards": [{"file": _shard_name(k, self.num_shards), "num_records": c}
                            for k, c in enumerate(self._counts)],
                 "latent_shapes": self.shapes, "dtype": self.dtype.name, **self.metadata}
        tmp = os.path.join(self.out_dir, INDEX + ".tmp")
        with open(tmp, "w") as f:
            json.dump(index, f)
        os.replace(tmp, os.path.join(self.out_dir, INDEX))
        return index

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def precompute_records(encode_video_fn: Callable, encode_text_fn: Callable, batches: Iterable[dict], out_dir: str,
                       *, num_shards: int = 1, dtype=np.float32, metadata: dict | None = None) -> dict:
    """Encode pixel batches and write the cache; returns the index.

    ``batches``: dicts ``{"video": (B,T,H,W,3) in [-1, 1], "prompt": list[str], optional "video_path":
    list[str], optional "image": (B,H,W,3)}`` (e.g. :func:`iterate_folder_once`).
    ``encode_video_fn(video) -> (mean, logvar)`` each ``(B,t,h,w,C)`` (posterior, unscaled);
    ``encode_text_fn(prompts) -> (B, L, D)``. With images, ``encode_video_fn(image[:, None])`` gives
    the image latents, stored as ``image_latent_mean`` / ``image_latent_logvar``.
    """
    n = 0
    with LatentCacheWriter(out_dir, num_shards, dtype, metadata) as w:
        for batch in batches:
            mean, logvar = encode_video_fn(batch["video"])
            mean, logvar = np.asarray(mean), np.asarray(logvar)
            text = np.asarray(encode_text_fn(list(batch["prompt"])))
            extra = {}
            if "image" in batch:
                im, il = encode_video_fn(np.asarray(batch["image"])[:, None])
                extra = {"image_latent_mean": np.asarray(im), "image_latent_logvar": np.asarray(il)}
            paths = batch.get("video_path", [""] * len(batch["prompt"]))
            for b in range(mean.shape[0]):
                w.write(latent_mean=mean[b], latent_logvar=logvar[b], text_emb=text[b], prompt=batch["prompt"][b],
                        video=paths[b], **{k: v[b] for k, v in extra.items()})
                n += 1
    log.info("latent cache: wrote %d records to %s", n, out_dir)
    return read_index(out_dir)


def iterate_folder_once(data_root: str, buckets, fps: float | None, batch_size: int = 1, *,
                        records=None, allow_short: bool = True, **folder_kw):
    """One ordered pass over a folder for precomputation: batches of up to ``batch_size`` same-bucket
    clips (the last of a bucket may be smaller), ``{"video", "prompt", "video_path", ["image"]}``.
    Unreadable videos are skipped with a warning."""
    from cogvideox_jax.data.folder_dataset import read_folder
    from cogvideox_jax.data.grain_pipeline import build_video_index, load_clip, load_image
    from cogvideox_jax.data.video_decode import VideoDecodeError

    recs = list(records) if records is not None else read_folder(data_root, **folder_kw)
    index = build_video_index(recs, buckets, fps, allow_short=allow_short)
    with_images = all(r.image is not None for r in recs)
    for b, bucket in enumerate(index.buckets):
        pending: list = []
        members = np.flatnonzero(index.bucket_of == b).tolist()
        for pos, i in enumerate(members):
            rec = recs[i]
            try:
                item = {"video": load_clip(rec.video, index.infos[i], bucket, fps)}
                if with_images:
                    item["image"] = load_image(rec.image, bucket)
                pending.append((rec, item))
            except (VideoDecodeError, OSError, ValueError) as e:
                log.warning("skipping video %s: %s", rec.video, e)
            if pending and (len(pending) == batch_size or pos == len(members) - 1):
                out = {k: np.stack([it[k] for _, it in pending]) for k in pending[0][1]}
                out["prompt"] = [r.prompt for r, _ in pending]
                out["video_path"] = [r.video for r, _ in pending]
                yield out
                pending = []


# ----------------------------------------------------------------------------- reading
def read_index(cache_dir: str) -> dict:
    path = os.path.join(os.fspath(cache_dir), INDEX)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{cache_dir} is not a latent cache (no {INDEX})")
    with open(path) as f:
        index = json.load(f)
    if index.get("format") != FORMAT:
        raise ValueError(f"{path}: format {index.get('format')!r}, expected {FORMAT!r}")
    return index


class LatentCacheSource(grain.sources.RandomAccessDataSource):
    """Random access over one or several cache directories: ``source[i]`` → the record dict."""

    def __init__(self, cache_dirs: str | Sequence[str]):
        dirs = [cache_dirs] if isinstance(cache_dirs, (str, os.PathLike)) else list(cache_dirs)
        self._sources, self._offsets, self.latent_shapes = [], [0], []
        for d in dirs:
            index = read_index(d)
            paths = [os.path.join(os.fspath(d), s["file"]) for s in index["shards"]]
            src = grain.sources.ArrayRecordDataSource(paths)
            if len(src) != index["num_records"]:
                raise ValueError(f"{d}: {len(src)} records on disk, index says {index['num_records']}")
            self._sources.append((src, [s["num_records"] for s in index["shards"]]))
            self._offsets.append(self._offsets[-1] + index["num_records"])
            self.latent_shapes += [tuple(s) for s in index["latent_shapes"]]

    def __len__(self) -> int:
        return self._offsets[-1]

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(i)
        d = int(np.searchsorted(self._offsets, i, side="right")) - 1
        src, counts = self._sources[d]
        j = i - self._offsets[d]
        shard, pos = j % len(counts), j // len(counts)   # round-robin → ArrayRecord's concatenated order
        return serialization.msgpack_restore(src[sum(counts[:shard]) + pos])


class LoadLatentBatch:
    """Plan entry → ``{"latents": z * scaling_factor, "text_emb", "prompt", "index"}``."""

    def __init__(self, source: LatentCacheSource, scaling_factor: float, seed: int, sample_posterior: bool = True):
        self.source, self.scaling_factor = source, float(scaling_factor)
        self.seed, self.sample_posterior = seed, sample_posterior

    def __call__(self, plan: dict) -> dict:
        recs = [self.source[int(i)] for i in plan["indices"]]
        lat = []
        for i, r in zip(plan["indices"], recs):
            mean = np.asarray(r["latent_mean"], np.float32)
            z = mean
            if self.sample_posterior:
                eps = np.random.default_rng([self.seed, plan["position"], int(i), 0x1A7]).standard_normal(
                    mean.shape, dtype=np.float32)
                z = mean + np.exp(0.5 * np.asarray(r["latent_logvar"], np.float32)) * eps
            lat.append(z * np.float32(self.scaling_factor))
        return {"latents": np.stack(lat), "text_emb": np.stack([np.asarray(r["text_emb"], np.float32) for r in recs]),
                "prompt": [r["prompt"] for r in recs], "index": np.asarray(plan["indices"], np.int64)}


class LatentBatchIterator:
    """Batch iterator with JSON-able ``get_state()`` / ``set_state()`` (the trainer's data contract)."""

    def __init__(self, dataset: grain.IterDataset, plan: BatchPlanSource):
        self.dataset, self.plan = dataset, plan
        self._it = iter(dataset)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        return next(self._it)

    def get_state(self) -> dict:
        return {"grain": self._it.get_state(), "seed": self.plan.seed}

    def set_state(self, state: dict) -> None:
        if int(state.get("seed", self.plan.seed)) != self.plan.seed:
            raise ValueError(f"data state was written with seed {state['seed']}, this iterator uses {self.plan.seed}")
        self._it.set_state(state["grain"])


def make_latent_iterator(cache_dirs, batch_size: int, *, scaling_factor: float, seed: int = 0,
                         shard_index: int | None = None, shard_count: int | None = None,
                         num_epochs: int | None = None, shuffle: bool = True, sample_posterior: bool = True,
                         read_threads: int = 2, prefetch_batches: int = 4) -> LatentBatchIterator:
    """Per-process batches ``{"latents": (B,t,h,w,C) float32 (scaled), "text_emb": (B,L,D) float32,
    "prompt": list[str], "index": (B,)}`` from latent caches; one latent shape per batch, seeded shuffle,
    shards as in :func:`cogvideox_jax.data.grain_pipeline.make_train_iterator`."""
    shard_index, shard_count = _resolve_shard(shard_index, shard_count)
    source = LatentCacheSource(cache_dirs)
    shapes = sorted(set(source.latent_shapes))
    bucket_of = np.asarray([shapes.index(s) for s in source.latent_shapes], np.int64)
    plan = BatchPlanSource(bucket_of, len(shapes), batch_size, seed, shard_index, shard_count, num_epochs, shuffle)
    read = grain.ReadOptions(num_threads=max(1, read_threads), prefetch_buffer_size=max(1, prefetch_batches))
    ds = grain.MapDataset.source(plan).map(LoadLatentBatch(source, scaling_factor, seed, sample_posterior))
    return LatentBatchIterator(ds.to_iter_dataset(read), plan)
