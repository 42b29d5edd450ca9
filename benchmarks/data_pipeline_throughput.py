"""Throughput of the grain video pipeline on a generated folder (clips/s, per read-thread setting).

    python benchmarks/data_pipeline_throughput.py --videos 16 --frames 48 --size 240x360 \
        --bucket 13x240x352 --fps 8 --batch 2 --batches 8 --threads 1,2

Writes smooth moving-pattern videos (``--noise``: random pixels, the decoder's worst case) at 24 fps
into a temporary folder, builds the index (header probes, timed), then times ``--batches`` batches
after a warm-up batch for each thread count.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from cogvideox_jax.data.folder_dataset import read_folder
from cogvideox_jax.data.grain_pipeline import build_video_index, make_train_dataset
from cogvideox_jax.data.video_io import write_video


def _clip(rng, t, h, w, noise: bool) -> np.ndarray:
    if noise:
        return rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)
    tt, yy, xx = np.arange(t)[:, None, None], np.arange(h)[None, :, None], np.arange(w)[None, None, :]
    ph = rng.uniform(0, 6.3)
    base = (127 + 100 * np.sin((xx + 3 * tt) / 20.0 + ph) * np.cos((yy - 2 * tt) / 15.0)).astype(np.uint8)
    return np.stack([base, np.roll(base, 5, 2), np.roll(base, 9, 1)], -1)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--videos", type=int, default=16)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--size", default="240x360")
    p.add_argument("--bucket", default="13x240x352")
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--noise", action="store_true")
    a = p.parse_args(argv)
    h, w = map(int, a.size.split("x"))
    with tempfile.TemporaryDirectory() as root:
        rng = np.random.default_rng(0)
        rels = []
        for n in range(a.videos):
            rel = f"videos/{n:04d}.mp4"
            write_video(os.path.join(root, rel), _clip(rng, a.frames, h, w, a.noise), fps=24)
            rels.append(rel)
        open(os.path.join(root, "videos.txt"), "w").write("\n".join(rels) + "\n")
        open(os.path.join(root, "prompts.txt"), "w").write("\n".join(f"clip {n}" for n in range(a.videos)) + "\n")
        recs = read_folder(root)
        t = time.perf_counter()
        index = build_video_index(recs, a.bucket, a.fps)
        print(f"index: {a.videos} videos probed in {time.perf_counter() - t:.2f}s; buckets {index.bucket_counts()}")
        for threads in (int(x) for x in a.threads.split(",")):
            ds, _ = make_train_dataset(index, a.batch, seed=0, read_threads=threads, prefetch_batches=2 * threads)
            it = iter(ds)
            next(it)
            t = time.perf_counter()
            for _ in range(a.batches):
                b = next(it)
            dt = time.perf_counter() - t
            getattr(it, "close", lambda: None)()
            print(f"read_threads={threads}: {a.batches * a.batch / dt:.2f} clips/s "
                  f"({dt / a.batches * 1e3:.0f} ms/batch, batch {b['video'].shape})")


if __name__ == "__main__":
    main()
