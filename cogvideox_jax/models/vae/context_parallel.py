"""Context-parallel VAE encode / decode: the time axis (and/or the rows) split over mesh axes with
``jax.shard_map``.

Equal to single-device ``frame_batching="whole"`` (one pass, GroupNorm over the whole clip, the SAT
behaviour) while each device holds ~1/P of the frames' activations — what makes long clips at high
resolution fit. The layout and collectives are in ``parallel/time_context.py``.

    post = context_parallel_encode(vae, params, video, mesh)     # DiagonalGaussian (B, t, h, w, C)
    frames = context_parallel_decode(vae, params, latents, mesh)  # (B, T, H, W, 3)

The clip's frames after the first must split evenly: encode needs (T - 1) divisible by
P * 2**temporal_compress_level (every shard keeps whole frame pairs through each time compression),
decode needs (t - 1) divisible by P and even. The batch may additionally be split over the mesh's
(data, fsdp) axes.

``height_axis=`` also (or instead, with ``axis=None``) splits the rows of every frame into bands
(``parallel/height_split.py``: one-row halos by ``ppermute``, psum-ed GroupNorm statistics) — for
decoding large frames: latent rows divisible by the band count (encode: H divisible by it times the
spatial compression).
"""
from __future__ import annotations

import contextlib
import math

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from cogvideox_jax.models.vae.posterior import DiagonalGaussian
from cogvideox_jax.parallel.height_split import height_context
from cogvideox_jax.parallel.time_context import time_context

TIME_AXIS = "sequence"
BATCH_AXES = ("data", "fsdp")


def to_time_blocks(x, shards: int):
    """(B, 1 + R, ...) -> (B, shards * (1 + R / shards), ...): per shard ``[x_0, rest_i]``."""
    b, t = x.shape[:2]
    n = (t - 1) // shards
    rest = x[:, 1:].reshape(b, shards, n, *x.shape[2:])
    first = jnp.broadcast_to(x[:, None, :1], (b, shards, 1, *x.shape[2:]))
    return jnp.concatenate([first, rest], axis=2).reshape(b, shards * (1 + n), *x.shape[2:])


def from_time_blocks(y, shards: int):
    """Inverse of ``to_time_blocks`` (keeps shard 0's copy of the first frame)."""
    b = y.shape[0]
    blocks = y.reshape(b, shards, -1, *y.shape[2:])
    rest = blocks[:, :, 1:].reshape(b, -1, *y.shape[2:])
    return jnp.concatenate([blocks[:, 0, :1], rest], axis=1)


def _check_split(num_frames: int, shards: int, multiple: int, what: str):
    # every shard gets a multiple of ``multiple`` rest frames, and the clip is odd (first frame + an
    # even rest) so that every level treats it as "first frame + rest", as each local block is treated
    required = math.lcm(shards * multiple, 2)
    if num_frames < 2 or (num_frames - 1) % required:
        raise ValueError(f"context-parallel {what} over {shards} shards: {num_frames} frames = 1 + "
                         f"{num_frames - 1}; T - 1 must be divisible by {required}")


def _batch_axes(mesh: Mesh, batch: int, exclude=()):
    axes, prod = [], 1
    for ax in BATCH_AXES:
        n = mesh.shape.get(ax, 1) if ax not in exclude else 1
        if n > 1 and batch % (prod * n) == 0:
            axes.append(ax)
            prod *= n
    return tuple(axes) or None


def _run(vae, params, x, mesh: Mesh, axis, height_axis, method):
    t_shards = mesh.shape[axis] if axis else 1
    h_shards = mesh.shape[height_axis] if height_axis else 1
    spec = P(_batch_axes(mesh, x.shape[0], exclude=(axis, height_axis)), axis, height_axis)

    def body(p, xs):
        with contextlib.ExitStack() as stack:
            if axis:
                stack.enter_context(time_context(axis, t_shards))
            if height_axis:
                stack.enter_context(height_context(height_axis, h_shards))
            return vae.apply({"params": p}, xs, method=method)

    blocks = to_time_blocks(x, t_shards) if axis else x
    blocks = jax.lax.with_sharding_constraint(blocks, NamedSharding(mesh, spec))
    out = jax.shard_map(body, mesh=mesh, in_specs=(P(), spec), out_specs=spec, check_vma=False)(params, blocks)
    return from_time_blocks(out, t_shards) if axis else out


def _check_axes(mesh: Mesh, axis, height_axis):
    for name in (axis, height_axis):
        if name is not None and name not in mesh.shape:
            raise ValueError(f"mesh has no axis {name!r} (axes: {tuple(mesh.shape)})")
    if axis is None and height_axis is None:
        raise ValueError("split the time axis (axis=...), the rows (height_axis=...) or both")
    if axis is not None and axis == height_axis:
        raise ValueError("time and height must be split over different mesh axes")


def _check_rows(rows: int, shards: int, multiple: int, what: str):
    if rows % (shards * multiple):
        raise ValueError(f"height-split {what} over {shards} shards: {rows} rows must be divisible by "
                         f"{shards * multiple} (whole rows per band at every resolution level)")


def _encode_moments(module, x):
    return module._encode_moments(x, "whole", None)


def _decode_frames(module, z):
    return module._decode_frames(z, "whole", None)


def context_parallel_encode(vae, params, video, mesh: Mesh, axis: str | None = TIME_AXIS,
                            height_axis: str | None = None) -> DiagonalGaussian:
    """Posterior of ``video`` (B, T, H, W, 3) with its frames split over ``mesh`` axis ``axis`` and/or
    its rows over ``height_axis``."""
    _check_axes(mesh, axis, height_axis)
    if axis:
        _check_split(video.shape[1], mesh.shape[axis], 2 ** vae.config.temporal_compress_level, "encode")
    if height_axis:
        _check_rows(video.shape[2], mesh.shape[height_axis], 2 ** (len(vae.config.block_out_channels) - 1),
                    "encode")
    moments = _run(vae, params, video, mesh, axis, height_axis, _encode_moments)
    return DiagonalGaussian.from_moments(moments.astype(jnp.float32))


def context_parallel_decode(vae, params, latents, mesh: Mesh, axis: str | None = TIME_AXIS,
                            height_axis: str | None = None):
    """Video of ``latents`` (B, t, h, w, C) with its latent frames split over ``mesh`` axis ``axis``
    and/or its rows over ``height_axis`` (large frames)."""
    _check_axes(mesh, axis, height_axis)
    if axis:
        _check_split(latents.shape[1], mesh.shape[axis], 1, "decode")
    if height_axis:
        _check_rows(latents.shape[2], mesh.shape[height_axis], 1, "decode")
    return _run(vae, params, latents, mesh, axis, height_axis, _decode_frames).astype(jnp.float32)
