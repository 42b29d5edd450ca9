"""CogVideoX down/up sampling (diffusers ``CogVideoXDownsample3D`` / ``CogVideoXUpsample3D``).

Downsample: with ``compress_time`` an odd clip keeps frame 0 and averages pairs of the rest
(T -> 1 + (T-1)/2), an even clip averages pairs (T -> T/2); then zero pad bottom/right by 1 and a
stride-2 3x3 conv per frame. Upsample mirrors it: odd T > 1 -> frame 0 spatially x2, the rest
x2 in time and space (T -> 2T - 1); even T -> 2T; T = 1 spatial only; then a 3x3 conv per frame.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cogvideox_jax.models.vae.conv_weights import ConvWeights, conv2d_frames
from cogvideox_jax.parallel.time_context import first_frame_apart


def _pool_time_pairs(x):
    b, t = x.shape[:2]
    return x.reshape(b, t // 2, 2, *x.shape[2:]).mean(axis=2)


def compress_time(x):
    t = x.shape[1]
    if first_frame_apart(t):
        if t == 1:
            return x
        return jnp.concatenate([x[:, :1], _pool_time_pairs(x[:, 1:])], axis=1)
    return _pool_time_pairs(x)


def _up2_space(x):
    return jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)


def expand_time_space(x, compress: bool):
    t = x.shape[1]
    x = _up2_space(x)
    if compress and t > 1:
        if first_frame_apart(t):
            return jnp.concatenate([x[:, :1], jnp.repeat(x[:, 1:], 2, axis=1)], axis=1)
        return jnp.repeat(x, 2, axis=1)
    return x


class Downsample3D(nn.Module):
    features: int
    compress_time: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        kernel, bias = ConvWeights((3, 3, x.shape[-1], self.features), self.dtype, self.param_dtype, name="conv")()
        x = x.astype(self.dtype)
        if self.compress_time:
            x = compress_time(x)
        return conv2d_frames(x, kernel, bias, stride=2, padding=((0, 1), (0, 1)))


class Upsample3D(nn.Module):
    features: int
    compress_time: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        kernel, bias = ConvWeights((3, 3, x.shape[-1], self.features), self.dtype, self.param_dtype, name="conv")()
        x = expand_time_space(x.astype(self.dtype), self.compress_time)
        return conv2d_frames(x, kernel, bias, stride=1, padding=((1, 1), (1, 1)))
