"""Grain training pipeline over a video–text folder: bucketed, sharded, deterministic, checkpointable.

``make_train_iterator(data_root, buckets, batch_size, seed=..., shard_index=..., shard_count=..., fps=...)``
returns a :class:`VideoBatchIterator` yielding per-process batches

    {"video": (B, T, H, W, 3) float32 in [-1, 1], "prompt": list[str] (B), "index": (B,) int64,
     "bucket": int, ["image": (B, H, W, 3) float32 when the folder has images.txt / "image" keys]}

(uint8 video/image with ``normalize=False``).

How it works. The folder's videos are probed once (header only) and assigned to a bucket
(:mod:`buckets`). A random-access plan (one entry per global step: a bucket and
``batch_size * shard_count`` dataset indices, reshuffled every epoch from ``seed``) is the grain
source; process ``shard_index`` takes its ``batch_size`` slice, so all processes use the same bucket at
the same step (one compiled shape per bucket) and shards are disjoint. A grain ``map`` decodes the
slice (frames at ``fps``, resize-to-cover + centre crop, [-1, 1]). A video that fails to decode is
replaced by another video of the same bucket (a seeded, deterministic choice), logged and counted; a
batch that cannot be filled becomes None and is filtered out. Counts travel inside the batch, so they
are right with multiprocessing workers. ``get_state()`` / ``set_state()`` (JSON-able dicts) resume
mid-epoch on exactly the same batches.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import grain
import numpy as np

from cogvideox_jax.data.buckets import Bucket, assign_bucket, parse_buckets, plan_epoch
from cogvideox_jax.data.folder_dataset import VideoRecord, read_folder
from cogvideox_jax.data.frame_sampling import sample_frame_indices
from cogvideox_jax.data.resize_crop import normalize_frames, resize_center_crop
from cogvideox_jax.data.video_decode import VideoDecodeError, VideoInfo, probe_video, read_frames

log = logging.getLogger(__name__)

INFINITE_EPOCHS = 1_000_000  # "repeat forever": plan length = epochs x batches per epoch


# ----------------------------------------------------------------------------- index
@dataclass(frozen=True)
class VideoIndex:
    records: tuple[VideoRecord, ...]
    infos: tuple[VideoInfo | None, ...]   # None: unreadable at probe time
    buckets: tuple[Bucket, ...]
    bucket_of: np.ndarray                  # (N,) int, -1 = unreadable or fits no bucket
    fps: float | None

    @property
    def num_unreadable(self) -> int:
        return sum(i is None for i in self.infos)

    @property
    def num_unassigned(self) -> int:
        return int(np.sum(self.bucket_of < 0))

    def bucket_counts(self) -> dict[str, int]:
        return {str(b): int(np.sum(self.bucket_of == i)) for i, b in enumerate(self.buckets)}


def _probe_cached(path: str, cache: dict) -> VideoInfo | None:
    try:
        st = os.stat(path)
    except OSError as e:
        log.warning("skipping unreadable video %s: %s", path, e)
        return None
    key = f"{path}|{st.st_size}|{int(st.st_mtime_ns)}"
    if key in cache:
        v = cache[key]
        return None if v is None else VideoInfo(*v)
    try:
        info = probe_video(path)
    except VideoDecodeError as e:
        log.warning("skipping unreadable video: %s", e)
        info = None
    cache[key] = None if info is None else [info.num_frames, info.fps, info.height, info.width]
    return info


def build_video_index(records: Sequence[VideoRecord], buckets, fps: float | None, *, allow_short: bool = True,
                      num_threads: int = 4, cache_path: str | None = None) -> VideoIndex:
    """Probe every video (threads; results cached in ``cache_path`` JSON if given) and bucket it."""
    buckets = parse_buckets(buckets)
    cache: dict = {}
    if cache_path and os.path.isfile(cache_path):
        try:
            with open(cache_path) as f:
                cache = json.load(f)
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable probe cache %s: %s", cache_path, e)
    probe = functools.partial(_probe_cached, cache=cache)
    with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
        infos = tuple(pool.map(probe, [r.video for r in records]))
    if cache_path:
        tmp = cache_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(cache, f)
        os.replace(tmp, cache_path)
    bucket_of = np.full(len(records), -1, np.int64)
    for i, info in enumerate(infos):
        if info is not None:
            b = assign_bucket(buckets, info.num_frames, info.fps, fps, info.height, info.width, allow_short)
            bucket_of[i] = -1 if b is None else b
    bad = sum(i is None for i in infos)
    if bad:
        log.warning("%d of %d videos are unreadable and skipped", bad, len(records))
    return VideoIndex(tuple(records), infos, buckets, bucket_of, fps)


# ----------------------------------------------------------------------------- decoding
def load_clip_uint8(path: str, info: VideoInfo, bucket: Bucket, fps: float | None,
                    offset_fraction: float = 0.0) -> np.ndarray:
    """One video as ``bucket.shape`` uint8 (frames at ``fps``, resized to cover, centre-cropped).

    Raises VideoDecodeError when unusable. A stream that ends before its header said (container
    rounding) is re-sampled from the frames it has when it holds at least 90% of them; a larger
    shortfall counts as truncated.
    """
    idx = sample_frame_indices(info.num_frames, info.fps, fps, bucket.frames, offset_fraction)
    try:
        frames = read_frames(path, idx)
    except VideoDecodeError as e:
        got = getattr(e, "num_decoded", 0)
        if got <= 0 or got < 0.9 * info.num_frames - 1:
            raise
        idx = sample_frame_indices(got, info.fps, fps, bucket.frames, offset_fraction)
        frames = read_frames(path, idx)
    return resize_center_crop(frames, bucket.height, bucket.width)


def load_clip(path: str, info: VideoInfo, bucket: Bucket, fps: float | None,
              offset_fraction: float = 0.0) -> np.ndarray:
    """:func:`load_clip_uint8` as float32 in [-1, 1]."""
    return normalize_frames(load_clip_uint8(path, info, bucket, fps, offset_fraction))


def load_image_uint8(path: str, bucket: Bucket) -> np.ndarray:
    """An image file resized to cover ``bucket`` and centre-cropped, uint8 ``(H, W, 3)``."""
    import imageio.v3 as iio

    try:
        img = np.asarray(iio.imread(path))
    except Exception as e:
        raise VideoDecodeError(f"cannot read image {path}: {e!r}") from e
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    return resize_center_crop(img[..., :3].astype(np.uint8), bucket.height, bucket.width)


def load_image(path: str, bucket: Bucket) -> np.ndarray:
    return normalize_frames(load_image_uint8(path, bucket))


# ----------------------------------------------------------------------------- grain stages
class BatchPlanSource(grain.sources.RandomAccessDataSource):
    """Global step ``i`` → ``{"position", "bucket", "indices"}`` (this shard's slice of the global batch)."""

    def __init__(self, bucket_of: np.ndarray, num_buckets: int, batch_size: int, seed: int,
                 shard_index: int, shard_count: int, num_epochs: int | None, shuffle: bool = True):
        if not 0 <= shard_index < shard_count:
            raise ValueError(f"shard_index {shard_index} not in [0, {shard_count})")
        self.bucket_of = np.asarray(bucket_of)
        self.num_buckets, self.batch_size, self.seed = num_buckets, batch_size, seed
        self.shard_index, self.shard_count, self.shuffle = shard_index, shard_count, shuffle
        self.global_batch = batch_size * shard_count
        self.batches_per_epoch = len(self._plan(0))
        if self.batches_per_epoch == 0:
            raise ValueError(f"no bucket has {self.global_batch} (batch_size x shard_count) usable videos; "
                             f"bucket sizes: {np.bincount(self.bucket_of[self.bucket_of >= 0], minlength=num_buckets)}")
        self.num_epochs = INFINITE_EPOCHS if num_epochs is None else num_epochs

    def _plan(self, epoch: int):
        lock = self.__dict__.get("_lock")
        if lock is None:
            lock = self.__dict__.setdefault("_lock", threading.Lock())
        with lock:  # grain reads with several threads
            cache = self.__dict__.setdefault("_plans", {})
            if epoch not in cache:
                if len(cache) >= 4:
                    cache.pop(next(iter(cache)))
                cache[epoch] = self._make_plan(epoch)
            return cache[epoch]

    def __getstate__(self):  # pickled into grain worker processes: no lock, no cached plans
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_plans")}

    def _make_plan(self, epoch: int):
        if self.shuffle:
            return plan_epoch(self.bucket_of, self.num_buckets, self.global_batch, self.seed, epoch)
        out = []
        for b in range(self.num_buckets):
            m = np.flatnonzero(self.bucket_of == b)
            out += [(b, m[k:k + self.global_batch]) for k in range(0, len(m) - self.global_batch + 1, self.global_batch)]
        return out

    def __len__(self) -> int:
        return self.batches_per_epoch * self.num_epochs

    def __getitem__(self, i):
        epoch, j = divmod(int(i), self.batches_per_epoch)
        b, idx = self._plan(epoch)[j]
        s = self.shard_index * self.batch_size
        return {"position": int(i), "bucket": int(b), "indices": idx[s:s + self.batch_size]}


class LoadBatch:
    """Decode a plan entry into a batch; failed videos are replaced from the same bucket (seeded)."""

    def __init__(self, index: VideoIndex, seed: int, random_offset: bool = False, max_replacements: int = 32,
                 normalize: bool = True):
        self.index, self.seed = index, seed
        self.random_offset, self.max_replacements = random_offset, max_replacements
        self.normalize = normalize
        self.with_images = all(r.image is not None for r in index.records)

    def _load(self, i: int, bucket: Bucket, position: int):
        rec, info = self.index.records[i], self.index.infos[i]
        off = (float(np.random.default_rng([self.seed, position, i, 7]).random())
               if self.random_offset else 0.0)
        out = {"video": load_clip_uint8(rec.video, info, bucket, self.index.fps, off)}
        if self.with_images:
            out["image"] = load_image_uint8(rec.image, bucket)
        return {k: normalize_frames(v) for k, v in out.items()} if self.normalize else out

    def __call__(self, plan: dict):
        b, pos = plan["bucket"], plan["position"]
        bucket = self.index.buckets[b]
        members = np.flatnonzero(self.index.bucket_of == b)
        members = members[np.random.default_rng([self.seed, pos, 0xFA11]).permutation(len(members))]
        in_batch = np.isin(members, plan["indices"])
        spare = iter(np.concatenate([members[~in_batch], members[in_batch]]))  # prefer videos not in this batch
        items, used, skipped = [], [], 0
        for i in plan["indices"]:
            i = int(i)
            for _ in range(self.max_replacements + 1):
                try:
                    items.append(self._load(i, bucket, pos))
                    used.append(i)
                    break
                except (VideoDecodeError, OSError, ValueError) as e:
                    skipped += 1
                    log.warning("skipping video %s: %s", self.index.records[i].video, e)
                    i = next((int(j) for j in spare if int(j) != i), None)
                    if i is None:
                        break
            else:
                i = None
            if i is None:
                log.warning("batch %d dropped: bucket %s has too few decodable videos", pos, bucket)
                return {"num_skipped": skipped, "dropped": True}
        batch = {k: np.stack([it[k] for it in items]) for k in items[0]}
        batch["prompt"] = [self.index.records[i].prompt for i in used]
        batch["index"] = np.asarray(used, np.int64)
        batch["bucket"] = b
        batch["num_skipped"] = skipped
        return batch


class VideoBatchIterator:
    """Iterator over batches with JSON-able ``get_state()`` / ``set_state()`` and skip counters."""

    def __init__(self, dataset: grain.IterDataset, index: VideoIndex, plan: BatchPlanSource):
        self.dataset, self.index, self.plan = dataset, index, plan
        self._it = iter(dataset)
        self.num_decode_failures = 0
        self.num_dropped_batches = 0

    @property
    def num_skipped(self) -> int:
        """Videos skipped so far: unreadable at probe time + decode failures seen in consumed batches."""
        return self.index.num_unreadable + self.num_decode_failures

    def skip_counts(self) -> dict[str, int]:
        return {"unreadable_videos": self.index.num_unreadable, "unassigned_videos": self.index.num_unassigned,
                "decode_failures": self.num_decode_failures, "dropped_batches": self.num_dropped_batches}

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        while True:
            batch = next(self._it)
            self.num_decode_failures += int(batch.pop("num_skipped"))
            if not batch.pop("dropped", False):
                return batch
            self.num_dropped_batches += 1

    def close(self) -> None:
        """Stop read-ahead threads / worker processes (also on garbage collection)."""
        close = getattr(self._it, "close", None)
        if close is not None:
            close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def get_state(self) -> dict:
        return {"grain": self._it.get_state(), "decode_failures": self.num_decode_failures,
                "dropped_batches": self.num_dropped_batches, "seed": self.plan.seed}

    def set_state(self, state: dict) -> None:
        if int(state.get("seed", self.plan.seed)) != self.plan.seed:
            raise ValueError(f"data state was written with seed {state['seed']}, this iterator uses {self.plan.seed}")
        self._it.set_state(state["grain"])
        self.num_decode_failures = int(state.get("decode_failures", 0))
        self.num_dropped_batches = int(state.get("dropped_batches", 0))


def _resolve_shard(shard_index, shard_count) -> tuple[int, int]:
    if shard_index is None and shard_count is None:
        opts = grain.sharding.ShardByJaxProcess(drop_remainder=True)
        return int(opts.shard_index), int(opts.shard_count)
    if shard_index is None or shard_count is None:
        raise ValueError("give both shard_index and shard_count, or neither (one shard per JAX process)")
    return int(shard_index), int(shard_count)


def make_train_dataset(index: VideoIndex, batch_size: int, *, seed: int = 0, shard_index: int = 0,
                       shard_count: int = 1, num_epochs: int | None = None, shuffle: bool = True,
                       random_offset: bool = False, num_workers: int = 0, read_threads: int = 4,
                       prefetch_batches: int = 8, normalize: bool = True,
                       worker_buffer_size: int = 2) -> tuple[grain.IterDataset, BatchPlanSource]:
    """The grain IterDataset of batch dicts (with ``num_skipped`` / ``dropped`` bookkeeping keys).

    ``read_threads`` batches are decoded concurrently (ffmpeg runs in subprocesses, so threads scale),
    up to ``prefetch_batches`` ahead of the consumer; ``num_workers`` > 0 adds grain worker processes.
    ``normalize=False`` yields uint8 clips (4x less host memory; ``x / 127.5 - 1`` on device).
    """
    plan = BatchPlanSource(index.bucket_of, len(index.buckets), batch_size, seed, shard_index, shard_count,
                           num_epochs, shuffle)
    read = grain.ReadOptions(num_threads=max(1, read_threads), prefetch_buffer_size=max(1, prefetch_batches))
    ds = grain.MapDataset.source(plan).map(LoadBatch(index, seed, random_offset, normalize=normalize)).to_iter_dataset(read)
    if num_workers > 0:
        from absl import flags

        if not flags.FLAGS.is_parsed():  # grain's worker processes read absl flags (defaults suffice)
            flags.FLAGS.mark_as_parsed()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers,
                                                         per_worker_buffer_size=worker_buffer_size))
    return ds, plan


def make_train_iterator(data_root: str, buckets, batch_size: int, *, seed: int = 0,
                        shard_index: int | None = None, shard_count: int | None = None,
                        fps: float | None = 8.0, num_epochs: int | None = None, shuffle: bool = True,
                        random_offset: bool = False, allow_short: bool = True, num_workers: int = 0,
                        read_threads: int = 4, prefetch_batches: int = 8, normalize: bool = True,
                        index_cache: str | None = None, records: Sequence[VideoRecord] | None = None,
                        **folder_kw) -> VideoBatchIterator:
    """Batches of ``batch_size`` (per process) clips from ``data_root`` (see the module docstring).

    ``buckets``: ``"49x480x720,49x480x480"`` or Buckets / (frames, height, width) tuples.
    ``shard_index`` / ``shard_count``: default one shard per JAX process. ``num_epochs`` None: forever.
    ``read_threads`` / ``prefetch_batches``: decode concurrency and read-ahead (see make_train_dataset);
    ``num_workers`` > 0 decodes in grain worker processes. ``normalize=False``: uint8 video/image.
    ``index_cache``: JSON file caching the header probes. ``folder_kw`` go to :func:`read_folder`.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    shard_index, shard_count = _resolve_shard(shard_index, shard_count)
    recs = list(records) if records is not None else read_folder(data_root, **folder_kw)
    index = build_video_index(recs, buckets, fps, allow_short=allow_short, cache_path=index_cache)
    ds, plan = make_train_dataset(index, batch_size, seed=seed, shard_index=shard_index, shard_count=shard_count,
                                  num_epochs=num_epochs, shuffle=shuffle, random_offset=random_offset,
                                  num_workers=num_workers, read_threads=read_threads,
                                  prefetch_batches=prefetch_batches, normalize=normalize)
    log.info("video pipeline: %d videos, buckets %s, %d batches/epoch (shard %d/%d)", len(recs),
             index.bucket_counts(), plan.batches_per_epoch, shard_index, shard_count)
    return VideoBatchIterator(ds, index, plan)
