"""Decoder SpatialNorm3D: ``GroupNorm(f) * conv_y(zq) + conv_b(zq)`` with zq the nearest-resized latent."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cogvideox_jax.models.vae.causal_conv3d import CausalConv3d
from cogvideox_jax.models.vae.deferred_frames import DeferredFrames, worth_deferring
from cogvideox_jax.models.vae.group_norm import GroupNorm
from cogvideox_jax.parallel.time_context import first_frame_apart


def _nearest_index(in_size: int, out_size: int) -> np.ndarray:
    """Source index of each output position, PyTorch "nearest": min(floor(dst * (in / out)), in - 1),
    the scale in float32."""
    scale = np.float32(in_size) / np.float32(out_size)
    return np.minimum(np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64), in_size - 1)


def _nearest_axis(z, axis: int, out_size: int):
    in_size = z.shape[axis]
    if in_size == out_size:
        return z
    if out_size % in_size == 0:
        return jnp.repeat(z, out_size // in_size, axis=axis)
    return jnp.take(z, jnp.asarray(_nearest_index(in_size, out_size)), axis=axis)


def nearest_resize_video(z, size):
    """Nearest resize of (B, T, H, W, C) to ``size = (T', H', W')`` like ``F.interpolate(mode='nearest')``."""
    for axis, n in zip((1, 2, 3), size):
        z = _nearest_axis(z, axis, n)
    return z


def resize_latent_like(zq, f_shape):
    """The reference's odd-frame handling: for odd T > 1 the first frame is resized on its own (and
    always for a time-split local block ``[f_0, rest_i]``)."""
    t, h, w = f_shape[1:4]
    if t > 1 and first_frame_apart(t):
        first = nearest_resize_video(zq[:, :1], (1, h, w))
        rest = nearest_resize_video(zq[:, 1:], (t - 1, h, w))
        return jnp.concatenate([first, rest], axis=1)
    return nearest_resize_video(zq, (t, h, w))


def latent_frame_index(latent_frames: int, frames: int) -> np.ndarray:
    """For each of ``frames`` frames, the latent frame ``resize_latent_like`` takes it from."""
    if frames > 1 and first_frame_apart(frames):
        return np.concatenate([[0], 1 + _nearest_index(latent_frames - 1, frames - 1)]).astype(np.int32)
    return _nearest_index(latent_frames, frames).astype(np.int32)


class SpatialNorm3D(nn.Module):
    num_groups: int = 32
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, f, zq, silu: bool = False, defer: bool = False):
        """``defer``: return ``DeferredFrames`` (normalised where a frame-looped conv reads the frames)
        if ``worth_deferring(f)``."""
        c = f.shape[-1]
        zq = zq.astype(self.dtype)
        # conv_y/conv_b are pointwise (1x1x1), so they commute with the nearest resize: applied at the
        # latent's resolution and resized after, the same values without the (T, H, W, C) conv outputs
        # and resized latents of the full resolution ever being materialised (the resize fuses into
        # the multiply-add below).
        conv_y, _ = CausalConv3d(c, (1, 1, 1), self.dtype, self.param_dtype, name="conv_y")(zq)
        conv_b, _ = CausalConv3d(c, (1, 1, 1), self.dtype, self.param_dtype, name="conv_b")(zq)
        # eps is hard-coded 1e-6 in the reference
        norm = GroupNorm(self.num_groups, 1e-6, jnp.float32, self.param_dtype, name="norm_layer")(f, defer=True)

        def apply(frames, start):
            t, h, w = frames.shape[1:4]
            if t == f.shape[1]:
                y_mul, y_add = resize_latent_like(conv_y, f.shape), resize_latent_like(conv_b, f.shape)
            else:  # frames start .. start + t - 1 of f: their latent frames, then the spatial resize
                index = jnp.asarray(latent_frame_index(zq.shape[1], f.shape[1]))
                frame_index = lax.dynamic_slice_in_dim(index, start, t)
                y_mul, y_add = (nearest_resize_video(jnp.take(v, frame_index, axis=1), (t, h, w))
                                for v in (conv_y, conv_b))
            y = norm.fn(frames, start) * y_mul.astype(jnp.float32) + y_add.astype(jnp.float32)
            if silu:
                y = y * jax.nn.sigmoid(y)
            return y.astype(self.dtype)

        if defer and worth_deferring(f):
            return DeferredFrames(f, apply)
        return apply(f, 0)
