"""CogVideoX down/up sampling (diffusers ``CogVideoXDownsample3D`` / ``CogVideoXUpsample3D``).

Downsample: with ``compress_time`` an odd clip keeps frame 0 and averages pairs of the rest
(T -> 1 + (T-1)/2), an even clip averages pairs (T -> T/2); then zero pad bottom/right by 1 and a
stride-2 3x3 conv per frame. Upsample mirrors it: odd T > 1 -> frame 0 spatially x2, the rest
x2 in time and space (T -> 2T - 1); even T -> 2T; T = 1 spatial only; then a 3x3 conv per frame
(computed on the frames before their time and space repetition: see ``upsample2x_conv3x3``).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from cogvideox_jax.models.vae.conv_weights import ConvWeights, conv2d_frames, frame_loop, use_frame_loop
from cogvideox_jax.parallel.height_split import split_padding
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


def expand_time(x, compress: bool):
    """The upsampler's nearest time expansion: odd T > 1 -> frame 0 once and every other frame twice
    (T -> 2T - 1); even T -> 2T; T = 1 (or ``compress`` off) unchanged."""
    t = x.shape[1]
    if not compress or t == 1:
        return x
    if first_frame_apart(t):
        return jnp.concatenate([x[:, :1], jnp.repeat(x[:, 1:], 2, axis=1)], axis=1)
    return jnp.repeat(x, 2, axis=1)


# Nearest 2x upsampling followed by a 3x3 conv (padding 1), per output row parity: output row 2i
# reads input rows (i - 1, i, i) through kernel rows (0, 1, 2), output row 2i + 1 reads (i, i, i + 1).
# So each parity is a 2-tap conv of the low-resolution rows, with the kernel rows summed per group
# and one zero row padded on the side the taps reach past.
_PARITY_ROW_GROUPS = (((0,), (1, 2)), ((0, 1), (2,)))
_PARITY_PADDING = ((1, 0), (0, 1))


def _parity_kernel(kernel, a: int, b: int):
    """(2, 2, C, O) kernel of output parity (a, b) from a (3, 3, C, O) kernel (summed in float32)."""
    k = kernel.astype(jnp.float32)
    rows = jnp.stack([sum(k[i] for i in g) for g in _PARITY_ROW_GROUPS[a]])
    return jnp.stack([sum(rows[:, i] for i in g) for g in _PARITY_ROW_GROUPS[b]], axis=1).astype(kernel.dtype)


def _upsample2x_conv3x3_frames(frames, kernel, bias):
    """The four parity convs of (N, h, w, C) frames, interleaved to (N, 2h, 2w, O)."""
    n, h, w, _ = frames.shape
    frames, (rows_pad, _) = split_padding(frames, ((1, 1), (1, 1)))
    halo = rows_pad == (0, 0)  # height split: one halo row on each side instead of zero padding
    parities = []
    for a in (0, 1):
        src = (frames[:, :-1] if a == 0 else frames[:, 1:]) if halo else frames
        pad_rows = (0, 0) if halo else _PARITY_PADDING[a]
        parities += [lax.conv_general_dilated(src, _parity_kernel(kernel, a, pb), window_strides=(1, 1),
                                              padding=(pad_rows, _PARITY_PADDING[pb]),
                                              dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias
                     for pb in (0, 1)]
    # interleave: (N, h, w, [a, b], O) -> (N, h, a, w, b, O), output pixel (2i + a, 2j + b)
    y = jnp.stack(parities, axis=3).reshape(n, h, w, 2, 2, -1).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(n, 2 * h, 2 * w, -1)


def upsample2x_conv3x3(x, kernel, bias):
    """``conv3x3(nearest_upsample_2x(frames))`` of (B, T, H, W, C) frames (padding 1), computed as four
    2x2 convs of the low-resolution frames (one per output pixel parity) interleaved: the 2x frames
    never exist, and 16 instead of 36 multiply-adds per low-resolution pixel and channel pair.
    Equal to the direct form up to float rounding (kernel taps are summed first). Large frames go
    one at a time through ``frame_loop`` (no whole-clip parity outputs next to the result)."""
    b, t, h, w, c = x.shape
    if use_frame_loop(4 * h * w * kernel.shape[-1], t):
        return frame_loop(lambda i: _upsample2x_conv3x3_frames(
            lax.dynamic_index_in_dim(x, i, axis=1, keepdims=False), kernel, bias), t)
    y = _upsample2x_conv3x3_frames(x.reshape(b * t, h, w, c), kernel, bias)
    return y.reshape(b, t, *y.shape[1:])


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
        # the time expansion repeats frames and the conv is per frame: convolve first, repeat after
        return expand_time(upsample2x_conv3x3(x.astype(self.dtype), kernel, bias), self.compress_time)
