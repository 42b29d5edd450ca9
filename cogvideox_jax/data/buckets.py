"""Multi-resolution frame pack: (frames, height, width) buckets and per-epoch batch plans.

Every video goes to one bucket (the longest clip it holds at the target fps, then the nearest aspect
ratio), every batch is drawn from one bucket, so a run compiles at most ``len(buckets)`` step shapes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cogvideox_jax.data.frame_sampling import frames_at_fps


@dataclass(frozen=True, order=True)
class Bucket:
    frames: int
    height: int
    width: int

    def __post_init__(self):
        if min(self.frames, self.height, self.width) <= 0:
            raise ValueError(f"bucket sizes must be positive: {self}")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Per-example video shape ``(T, H, W, 3)``."""
        return (self.frames, self.height, self.width, 3)

    @property
    def aspect(self) -> float:
        return self.width / self.height

    def __str__(self) -> str:
        return f"{self.frames}x{self.height}x{self.width}"


def parse_buckets(spec: str | Sequence) -> tuple[Bucket, ...]:
    """``"49x480x720,49x480x480"`` (frames x height x width), or a sequence of Buckets / 3-tuples."""
    if isinstance(spec, str):
        items = [s.strip() for s in spec.split(",") if s.strip()]
        out = []
        for s in items:
            parts = s.lower().split("x")
            if len(parts) != 3:
                raise ValueError(f"bucket {s!r} is not FRAMESxHEIGHTxWIDTH")
            out.append(Bucket(*(int(p) for p in parts)))
    elif isinstance(spec, Bucket):
        out = [spec]
    else:
        out = [b if isinstance(b, Bucket) else Bucket(*(int(v) for v in b)) for b in spec]
    if not out:
        raise ValueError("no buckets given")
    if len(set(out)) != len(out):
        raise ValueError(f"duplicate buckets in {spec!r}")
    return tuple(out)


def assign_bucket(buckets: Sequence[Bucket], num_frames: int, src_fps: float, target_fps: float | None,
                  height: int, width: int, allow_short: bool = True) -> int | None:
    """Index of the bucket for a video, or None when it fits none.

    Length: the bucket frame count that is the largest not exceeding the frames available at
    ``target_fps``; a video shorter than every bucket goes to the shortest one (sampled with a smaller
    stride) when ``allow_short``, else None. Shape: among buckets of that length, the nearest aspect
    ratio (in log space; ties → first listed).
    """
    if num_frames <= 0 or height <= 0 or width <= 0:
        return None
    avail = frames_at_fps(num_frames, src_fps, target_fps)
    lengths = sorted({b.frames for b in buckets})
    fitting = [n for n in lengths if n <= avail]
    if fitting:
        length = fitting[-1]
    elif allow_short and num_frames >= 1:
        length = lengths[0]
    else:
        return None
    log_ar = math.log(width / height)
    best, best_d = None, math.inf
    for i, b in enumerate(buckets):
        if b.frames != length:
            continue
        d = abs(math.log(b.aspect) - log_ar)
        if d < best_d - 1e-12:
            best, best_d = i, d
    return best


def plan_epoch(bucket_of: np.ndarray, num_buckets: int, global_batch: int, seed: int,
               epoch: int) -> list[tuple[int, np.ndarray]]:
    """Shuffled global batches of one epoch: ``[(bucket, dataset indices (global_batch,)), ...]``.

    ``bucket_of[i]`` is example i's bucket (-1 = unusable). Each bucket's examples are permuted and cut
    into full batches (the remainder waits for another epoch's permutation), then batch order is
    shuffled. Depends only on (bucket_of, global_batch, seed, epoch).
    """
    bucket_of = np.asarray(bucket_of)
    rng = np.random.default_rng([int(seed), int(epoch), 0x5EED])
    batches: list[tuple[int, np.ndarray]] = []
    for b in range(num_buckets):
        members = np.flatnonzero(bucket_of == b)
        members = members[rng.permutation(len(members))]
        for k in range(len(members) // global_batch):
            batches.append((b, members[k * global_batch:(k + 1) * global_batch]))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]
