"""GroupNorm over channels-last video with PyTorch's statistics (per group over C/G x T x H x W)."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cogvideox_jax.models.vae.deferred_frames import DeferredFrames
from cogvideox_jax.parallel.height_split import active_height_context
from cogvideox_jax.parallel.logical_axes import logical_init
from cogvideox_jax.parallel.time_context import active_time_context, split_sum


def _group_stats(xg, num_frames: int | None):
    """Per (batch, group) mean and variance of ``xg`` (B, N, G, C/G) float32, shaped (B, 1, G, 1).
    For a video (``num_frames`` = T, N = T x H x W) under a ``time_context`` the reduction spans every
    shard's frames (the shared first frame counted once), under a ``height_context`` every shard's rows."""
    tctx, hctx = active_time_context(), active_height_context()
    if (tctx is None and hctx is None) or num_frames is None:
        mean = jnp.mean(xg, axis=(1, 3), keepdims=True)
        return mean, jnp.mean(jnp.square(xg - mean), axis=(1, 3), keepdims=True)
    b, _, g, cg = xg.shape
    xf = xg.reshape(b, num_frames, -1, g, cg)
    frames = 1 + tctx.size * (num_frames - 1) if tctx else num_frames
    count = frames * xf.shape[2] * cg * (hctx.size if hctx else 1)

    def total(per_frame):  # (B, T, G) -> (B, G) summed over the whole clip
        s = split_sum(per_frame, tctx) if tctx else per_frame.sum(axis=1)
        return jax.lax.psum(s, hctx.axis) if hctx else s

    mean = total(xf.sum(axis=(2, 4))) / count                                 # (B, G)
    var = total(jnp.square(xf - mean[:, None, None, :, None]).sum(axis=(2, 4))) / count
    return mean[:, None, :, None], var[:, None, :, None]


def group_norm_affine(x, scale, bias, num_groups: int, eps: float):
    """Per-(batch, channel) float32 multiplier ``a`` and offset ``b``, shaped to broadcast against
    ``x`` (B, ..., C), with ``GroupNorm(x) = x * a + b``; statistics in float32."""
    shape = x.shape
    c = shape[-1]
    xg = x.reshape(shape[0], -1, num_groups, c // num_groups).astype(jnp.float32)
    mean, var = _group_stats(xg, shape[1] if x.ndim == 5 else None)
    inv = jax.lax.rsqrt(var + eps)
    # fold the affine into per-(batch, channel) multiplier/offset: y = x * a + b
    g = scale.astype(jnp.float32).reshape(1, 1, num_groups, c // num_groups)
    bb = bias.astype(jnp.float32).reshape(1, 1, num_groups, c // num_groups)
    a = inv * g
    b = bb - mean * a
    bshape = (shape[0],) + (1,) * (x.ndim - 2) + (c,)
    return a.reshape(bshape), b.reshape(bshape)


def affine_silu(x, a, b, silu: bool, out_dtype):
    y = x.astype(jnp.float32) * a + b
    if silu:
        y = y * jax.nn.sigmoid(y)
    return y.astype(out_dtype)


class GroupNorm(nn.Module):
    num_groups: int = 32
    epsilon: float = 1e-6
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, silu: bool = False, defer: bool = False):
        """``defer``: return ``DeferredFrames`` (normalised where they are read; the caller decides,
        e.g. with ``worth_deferring(x)``)."""
        c = x.shape[-1]
        scale = self.param("scale", logical_init(nn.initializers.ones, ("norm",)), (c,), self.param_dtype)
        bias = self.param("bias", logical_init(nn.initializers.zeros, ("norm",)), (c,), self.param_dtype)
        a, b = group_norm_affine(x, scale, bias, self.num_groups, self.epsilon)
        if defer:
            return DeferredFrames(x, lambda frames, start: affine_silu(frames, a, b, silu, self.dtype))
        return affine_silu(x, a, b, silu, self.dtype)
