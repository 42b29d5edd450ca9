"""Height (spatial) parallelism for VAE decoding of large frames: rows split over a mesh axis.

Each of the P shards holds a contiguous band of H / P rows of every frame. Two operations see
across bands:

* the spatial convolutions — a 3x3 conv needs one row above and below its band: the neighbours'
  edge rows by ``ppermute``, zeros at the frame's top and bottom (the reference's zero padding);
  the stride-2 downsampling conv (zero pad bottom/right by 1) needs one row below;
* GroupNorm statistics — per-band sums ``psum``-ed over the axis.

Nearest-neighbour upsampling (x2 in space) and the spatial norm's latent resize stay band-local
when every band keeps an integer number of rows at every level. ``height_context(axis, size)``
turns both on while the VAE is traced inside ``jax.shard_map`` (see ``cogvideox_jax/models/vae/context_parallel.py``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from cogvideox_jax.parallel.axis_split import AxisSplit, AxisSplitSwitch

# ``with height_context(axis, size):`` traces the VAE with frame rows split ``size`` ways over mesh
# axis ``axis`` (inside shard_map)
height_context = AxisSplitSwitch("height_context")
active_height_context = height_context.active


def halo_rows(x, top: int, bottom: int, ctx: AxisSplit, axis: int = -3):
    """Pad this band of rows (``axis``) with ``top`` rows of the band above and ``bottom`` rows of the
    band below (zeros beyond the frame's edges)."""
    x = jnp.moveaxis(x, axis, 0)
    idx = jax.lax.axis_index(ctx.axis)
    parts = []
    if top:
        recv = jax.lax.ppermute(x[-top:], ctx.axis, [(j, j + 1) for j in range(ctx.size - 1)])
        parts.append(jnp.where(idx > 0, recv, jnp.zeros_like(recv)))
    parts.append(x)
    if bottom:
        recv = jax.lax.ppermute(x[:bottom], ctx.axis, [(j + 1, j) for j in range(ctx.size - 1)])
        parts.append(jnp.where(idx < ctx.size - 1, recv, jnp.zeros_like(recv)))
    return jnp.moveaxis(jnp.concatenate(parts, axis=0), 0, axis)


def split_padding(x, padding):
    """For a conv over (H, W) with ``padding = ((top, bottom), (left, right))``: under a height context
    the row padding becomes halo rows (returns the padded ``x`` and ``((0, 0), (left, right))``);
    otherwise ``x`` and ``padding`` unchanged. ``x`` is (..., H, W, C)."""
    ctx = active_height_context()
    if ctx is None:
        return x, padding
    (top, bottom), cols = padding
    if x.shape[-3] < max(top, bottom):
        raise ValueError(f"height split: a band of {x.shape[-3]} rows is thinner than the conv's halo")
    return halo_rows(x, top, bottom, ctx), ((0, 0), cols)
