"""Causal 3D convolution with a frame cache (diffusers ``CogVideoXCausalConv3d``, pad_mode "first").

All temporal padding is at the front: with no cache the first frame is repeated ``kt - 1`` times,
otherwise the cache (the last ``kt - 1`` frames of the previous chunk's padded input) is
prepended. Spatial padding is zeros, ``(k - 1) // 2`` on each side.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from cogvideox_jax.models.vae.conv_weights import ConvWeights, conv3d_native, conv3d_valid_time
from cogvideox_jax.models.vae.deferred_frames import DeferredFrames, materialize
from cogvideox_jax.parallel.time_context import active_time_context, causal_pad_time_split, drop_seam


def causal_pad_time(x, kt: int, cache=None):
    """Return ``(padded_x, new_cache)``; ``new_cache`` is None when ``kt == 1``."""
    if kt == 1:
        return x, None
    if cache is None:
        cache = jnp.repeat(x[:, :1], kt - 1, axis=1)
    xp = jnp.concatenate([cache.astype(x.dtype), x], axis=1)
    return xp, xp[:, -(kt - 1) :]


def next_cache(x, kt: int, cache=None):
    """The last ``kt - 1`` frames of ``concat(front, x)``, front being ``cache`` or frame 0 repeated,
    without building the concatenation; ``x`` an array or ``DeferredFrames`` (its frames transformed)."""
    n, t = kt - 1, x.shape[1]
    last = x.frames(max(t - n, 0), min(n, t)) if isinstance(x, DeferredFrames) else x[:, max(t - n, 0) :]
    if t >= n:
        return last
    front = jnp.repeat(last[:, :1], n, axis=1) if cache is None else cache.astype(last.dtype)
    return jnp.concatenate([front[:, t:], last], axis=1)


class CausalConv3d(nn.Module):
    """``(x, cache) -> (y, new_cache)``; x is (B, T, H, W, C), y is (B, T, H, W, features)."""

    features: int
    kernel_size: Sequence[int] = (3, 3, 3)
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    native_conv3d: bool = False

    @nn.compact
    def __call__(self, x, cache=None):
        kt, kh, kw = self.kernel_size
        kernel, bias = ConvWeights(
            (kt, kh, kw, x.shape[-1], self.features), self.dtype, self.param_dtype, name="conv"
        )()
        pad = (((kh - 1) // 2,) * 2, ((kw - 1) // 2,) * 2)
        # DeferredFrames (a norm to apply where the frames are read, deferred_frames.py) reach the
        # frame-looped conv3d_valid_time as they are; the cache then holds transformed frames, as the
        # reference's cache of this conv's padded input does
        if not (isinstance(x, DeferredFrames) and kt > 1 and not self.native_conv3d):
            x = materialize(x).astype(self.dtype)
            conv = conv3d_native if self.native_conv3d else conv3d_valid_time
            if kt > 1 and cache is None and active_time_context() is not None:
                # time split over a mesh axis (parallel/time_context.py): halo from the previous shards
                return drop_seam(conv(causal_pad_time_split(x, kt), kernel, bias, pad), kt), None
            if kt == 1 or self.native_conv3d:
                xp, new_cache = causal_pad_time(x, kt, cache)
                return conv(xp, kernel, bias, pad), new_cache
        front = kt - 1 if cache is None else cache.astype(self.dtype)
        return conv3d_valid_time(x, kernel, bias, pad, front=front), next_cache(x, kt, cache)


class PointwiseConv3d(nn.Module):
    """1x1x1 convolution (diffusers ``CogVideoXSafeConv3d(kernel_size=1)``), params at this level."""

    features: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        from cogvideox_jax.models.vae.conv_weights import _KERNEL_NAMES, torch_like_conv_init
        from cogvideox_jax.parallel.logical_axes import logical_init

        kernel = self.param(
            "kernel",
            logical_init(torch_like_conv_init, _KERNEL_NAMES[5]),
            (1, 1, 1, x.shape[-1], self.features),
            self.param_dtype,
        )
        bias = self.param("bias", logical_init(nn.initializers.zeros, ("conv_out",)), (self.features,), self.param_dtype)
        y = jnp.einsum("bthwc,cd->bthwd", x.astype(self.dtype), kernel[0, 0, 0].astype(self.dtype))
        return y + bias.astype(self.dtype)
