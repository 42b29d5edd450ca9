"""Time (context) parallelism for the 3D causal VAE: the per-shard layout and its two collectives.

A causal video of T = 1 + R frames is split over the mesh axis ``axis`` (P shards) as P local blocks
``[x_0, rest_i]``: every shard holds the first frame ``x_0`` (one frame, replicated) followed by its
contiguous R / P frames of the rest. This layout keeps every frame-local operation of the VAE
unchanged: the CogVideoX time down/up sampling and the spatial norm's latent resize already treat an
odd clip as "first frame + the rest", and a local block ``[x_0, rest_i]`` is odd whenever R / P is
even. Only two operations see across shards:

* the causal conv's front padding — a shard's rest frames need the ``kt - 1`` frames before them:
  the end of the previous shards' rest (``ppermute``), or, at the start of the stream, copies of
  ``x_0`` (the reference's "repeat the first frame" padding);
* GroupNorm statistics — sums over the rest frames are ``psum``-ed over the axis, the first frame
  is counted once.

``time_context(axis, size)`` turns both on while a VAE is traced inside ``jax.shard_map`` (see
``cogvideox_jax/models/vae/context_parallel.py``); outside it nothing changes.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from cogvideox_jax.parallel.axis_split import AxisSplit, AxisSplitSwitch

# ``with time_context(axis, size):`` traces the VAE with its time axis split ``size`` ways over mesh
# axis ``axis`` (inside shard_map)
time_context = AxisSplitSwitch("time_context")
active_time_context = time_context.active


def first_frame_apart(num_frames: int) -> bool:
    """The reference's rule for treating a clip as "first frame + the rest" (odd frame counts), which
    every time-split local block ``[x_0, rest_i]`` follows whatever its length."""
    return num_frames % 2 == 1 or active_time_context() is not None


def previous_frames(rest, first, count: int, ctx: AxisSplit):
    """The ``count`` frames before this shard's ``rest`` (B, n, ...) in the stream
    ``[first] * count ++ rest_0 ++ rest_1 ++ ...``; ``first`` is (B, 1, ...)."""
    n = rest.shape[1]
    if n == 0:
        raise ValueError("context-parallel causal conv needs at least one rest frame per shard")
    idx = jax.lax.axis_index(ctx.axis)
    before_start = jnp.repeat(first, n, axis=1)
    blocks = []
    for shift in range(-(-count // n), 0, -1):  # farthest block first
        pairs = [(j, j + shift) for j in range(ctx.size - shift)]
        received = jax.lax.ppermute(rest, ctx.axis, pairs) if pairs else jnp.zeros_like(rest)
        blocks.append(jnp.where(idx >= shift, received, before_start))
    return jnp.concatenate(blocks, axis=1)[:, -count:]


def causal_pad_time_split(x, kt: int):
    """Front-pad a local block ``[x_0, rest]`` for a valid-in-time conv of kernel ``kt``.

    Returns ``[x_0] * kt ++ previous_frames ++ rest``: a valid-in-time conv of it gives frame 0
    (from ``[x_0] * kt``), then ``kt - 1`` frames that straddle the seam (drop them: ``drop_seam``),
    then the rest frames.
    """
    ctx = active_time_context()
    first, rest = x[:, :1], x[:, 1:]
    halo = previous_frames(rest, first, kt - 1, ctx)
    return jnp.concatenate([jnp.repeat(first, kt, axis=1), halo, rest], axis=1)


def drop_seam(y, kt: int):
    """Output of a conv of ``causal_pad_time_split``'s result -> the local block ``[y_0, rest]``."""
    return jnp.concatenate([y[:, :1], y[:, kt:]], axis=1)


def split_sum(values, ctx: AxisSplit):
    """Sum of a per-frame quantity ``values`` (B, t_local, ...) reduced over time across the whole clip:
    frame 0 (replicated on every shard) once, the rest frames over all shards."""
    return values[:, :1].sum(axis=1) + jax.lax.psum(values[:, 1:].sum(axis=1), ctx.axis)
