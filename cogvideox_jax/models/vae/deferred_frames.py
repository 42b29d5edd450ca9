"""A per-frame elementwise transform of a video that is applied where its frames are read.

The VAE's norms (GroupNorm / SpatialNorm3D, then SiLU) feed causal convs. When the conv runs its
per-frame loop (large frames, ``conv_weights.use_frame_loop``), the norm can hand it
``DeferredFrames(x, fn)`` instead of the normalised clip: the loop normalises the frames it reads,
so the normalised (T, H, W, C) clip is never materialised next to ``x``. Everything else calls
``materialize()``. Only without a time or height split (their halos must be exchanged as arrays).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from jax import lax

from cogvideox_jax.models.vae.conv_weights import use_frame_loop
from cogvideox_jax.parallel.height_split import active_height_context
from cogvideox_jax.parallel.time_context import active_time_context


@dataclasses.dataclass(frozen=True)
class DeferredFrames:
    """``fn(x[:, s : s + n], s)`` gives frames ``s .. s + n - 1`` of the transformed clip; ``fn`` is
    elementwise per frame (it may depend on the frame index) and keeps the shape."""

    x: Any
    fn: Callable

    @property
    def shape(self):
        return self.x.shape

    def frames(self, start, count: int):
        return self.fn(lax.dynamic_slice_in_dim(self.x, start, count, axis=1), start)

    def frame(self, index):
        """Frame ``index`` (traced or static), (B, H, W, C)."""
        return self.frames(index, 1)[:, 0]

    def materialize(self):
        return self.fn(self.x, 0)


def worth_deferring(x) -> bool:
    """Whether a norm of ``x`` (B, T, H, W, C) should be deferred into the conv that reads it."""
    if x.ndim != 5 or active_time_context() is not None or active_height_context() is not None:
        return False
    return use_frame_loop(x.shape[2] * x.shape[3] * x.shape[4], x.shape[1])


def materialize(x):
    return x.materialize() if isinstance(x, DeferredFrames) else x
