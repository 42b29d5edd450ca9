"""Optional: the video–text folder as a TFDS dataset (ArrayRecord shards), and a grain reader for it.

Needs ``tensorflow-datasets`` (``pip install -e ".[tfds]"``); tensorflow itself is not needed. Each
bucket is one split named ``b{k}_{frames}x{height}x{width}`` holding clips already sampled at the
config's fps, resized and centre-cropped to the bucket, as uint8 tensors (zlib-compressed): training
then reads without ffmpeg. Raw uint8 clips are large (49x480x720 ≈ 51 MB each); for full-size
training prefer the latent cache (:mod:`cogvideox_jax.data.latent_cache`).

Build::

    from cogvideox_jax.data.tfds_builder import build_tfds
    builder_dir = build_tfds("/data/my_videos", "/data/tfds", buckets="49x480x720", fps=8)

or with the CLI (default config: 49x480x720 at 8 fps)::

    tfds build video_text_folder --imports cogvideox_jax.data.tfds_builder --manual_dir /data/my_videos \\
        --data_dir /data/tfds --file_format array_record

Read: ``make_tfds_train_iterator(builder_dir, batch_size, seed=..., shard_index=..., shard_count=...)``
yields the same batches as :func:`cogvideox_jax.data.grain_pipeline.make_train_iterator`.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re

import grain
import numpy as np

try:
    import tensorflow_datasets as tfds
except ImportError as e:  # pragma: no cover - exercised only without the optional dependency
    raise ImportError("cogvideox_jax.data.tfds_builder needs tensorflow-datasets: "
                      "pip install -e '.[tfds]' (tensorflow is not required)") from e

from cogvideox_jax.data.buckets import Bucket, parse_buckets
from cogvideox_jax.data.folder_dataset import read_folder
from cogvideox_jax.data.grain_pipeline import (BatchPlanSource, _resolve_shard, build_video_index,
                                               load_clip_uint8, load_image_uint8)
from cogvideox_jax.data.latent_cache import LatentBatchIterator
from cogvideox_jax.data.resize_crop import normalize_frames
from cogvideox_jax.data.video_decode import VideoDecodeError

log = logging.getLogger(__name__)

_SPLIT = re.compile(r"^b(\d+)_(\d+)x(\d+)x(\d+)$")


def split_name(k: int, bucket: Bucket) -> str:
    return f"b{k}_{bucket.frames}x{bucket.height}x{bucket.width}"


@dataclasses.dataclass
class VideoTextConfig(tfds.core.BuilderConfig):
    buckets: str = "49x480x720"
    fps: float = 8.0
    allow_short: bool = True
    with_images: bool = False


class VideoTextFolder(tfds.core.GeneratorBasedBuilder):
    """A CogVideoX fine-tuning folder (prompts.txt + videos.txt or metadata.jsonl) in ``manual_dir``."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [VideoTextConfig(name="default", description="49x480x720 at 8 fps")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Pass the data root (prompts.txt + videos.txt or metadata.jsonl) as manual_dir."

    def _info(self):
        features = {
            "video": tfds.features.Tensor(shape=(None, None, None, 3), dtype=np.uint8, encoding="zlib"),
            "prompt": tfds.features.Text(),
            "video_path": tfds.features.Text(),
        }
        if self.builder_config.with_images:
            features["image"] = tfds.features.Tensor(shape=(None, None, 3), dtype=np.uint8, encoding="zlib")
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features),
                                     description=f"video-text clips, buckets {self.builder_config.buckets}, "
                                                 f"{self.builder_config.fps} fps")

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        records = read_folder(os.fspath(dl_manager.manual_dir))
        if cfg.with_images and any(r.image is None for r in records):
            raise ValueError("with_images=True but the folder has videos without images")
        index = build_video_index(records, cfg.buckets, cfg.fps, allow_short=cfg.allow_short)
        splits = {}
        for k, bucket in enumerate(index.buckets):
            members = np.flatnonzero(index.bucket_of == k).tolist()
            if members:
                splits[split_name(k, bucket)] = self._generate_examples(index, members, bucket)
        if not splits:
            raise ValueError(f"no readable video fits the buckets {cfg.buckets}")
        return splits

    def _generate_examples(self, index, members, bucket):
        cfg = self.builder_config
        for i in members:
            rec = index.records[i]
            try:
                ex = {"video": load_clip_uint8(rec.video, index.infos[i], bucket, cfg.fps),
                      "prompt": rec.prompt, "video_path": rec.video}
                if cfg.with_images:
                    ex["image"] = load_image_uint8(rec.image, bucket)
            except (VideoDecodeError, OSError, ValueError) as e:
                log.warning("skipping video %s: %s", rec.video, e)
                continue
            yield i, ex


def build_tfds(data_root: str, data_dir: str, *, buckets="49x480x720", fps: float = 8.0, allow_short: bool = True,
               with_images: bool = False, config_name: str | None = None) -> str:
    """Build ``data_root`` into ArrayRecord shards under ``data_dir``; returns the builder directory."""
    bs = parse_buckets(buckets)
    spec = ",".join(str(b) for b in bs)
    name = config_name or re.sub(r"[^a-zA-Z0-9_]", "_", f"{spec}_{fps:g}fps")
    cfg = VideoTextConfig(name=name, buckets=spec, fps=fps, allow_short=allow_short, with_images=with_images)
    builder = VideoTextFolder(config=cfg, data_dir=os.fspath(data_dir), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(data_root)))
    return os.fspath(builder.data_dir)


class TfdsVideoSource(grain.sources.RandomAccessDataSource):
    """All bucket splits of a built dataset, concatenated: ``source[i]`` → ``{"video" uint8, "prompt", ...}``."""

    def __init__(self, builder_dir: str):
        builder = tfds.builder_from_directory(os.fspath(builder_dir))
        parsed = sorted((int(m.group(1)), name, Bucket(*map(int, m.groups()[1:])))
                        for name in builder.info.splits.keys() if (m := _SPLIT.match(name)))
        if not parsed:
            raise ValueError(f"{builder_dir}: no bucket splits (b<k>_<T>x<H>x<W>) in {list(builder.info.splits)}")
        data = builder.as_data_source()
        self.buckets = tuple(b for _, _, b in parsed)
        self._sources = [data[name] for _, name, _ in parsed]
        self._offsets = np.cumsum([0] + [len(s) for s in self._sources])
        self.bucket_of = np.repeat(np.arange(len(parsed)), [len(s) for s in self._sources])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        k = int(np.searchsorted(self._offsets, i, side="right")) - 1
        ex = dict(self._sources[k][i - int(self._offsets[k])])
        for key in ("prompt", "video_path"):
            if isinstance(ex.get(key), bytes):
                ex[key] = ex[key].decode("utf-8")
        return ex


class LoadTfdsBatch:
    def __init__(self, source: TfdsVideoSource):
        self.source = source

    def __call__(self, plan: dict) -> dict:
        exs = [self.source[int(i)] for i in plan["indices"]]
        out = {"video": normalize_frames(np.stack([e["video"] for e in exs])),
               "prompt": [e["prompt"] for e in exs], "index": np.asarray(plan["indices"], np.int64),
               "bucket": plan["bucket"]}
        if "image" in exs[0]:
            out["image"] = normalize_frames(np.stack([e["image"] for e in exs]))
        return out


def make_tfds_train_iterator(builder_dir: str, batch_size: int, *, seed: int = 0, shard_index: int | None = None,
                             shard_count: int | None = None, num_epochs: int | None = None, shuffle: bool = True,
                             read_threads: int = 4, prefetch_batches: int = 8) -> LatentBatchIterator:
    """Per-process batches ``{"video": (B,T,H,W,3) float32 [-1,1], "prompt", "index", "bucket"}`` from a
    built dataset; same plan (buckets, seeded shuffle, shards, resumable state) as the folder pipeline."""
    shard_index, shard_count = _resolve_shard(shard_index, shard_count)
    source = TfdsVideoSource(builder_dir)
    plan = BatchPlanSource(source.bucket_of, len(source.buckets), batch_size, seed, shard_index, shard_count,
                           num_epochs, shuffle)
    read = grain.ReadOptions(num_threads=max(1, read_threads), prefetch_buffer_size=max(1, prefetch_batches))
    ds = grain.MapDataset.source(plan).map(LoadTfdsBatch(source)).to_iter_dataset(read)
    return LatentBatchIterator(ds, plan)
