"""Convolution parameters (kernel + bias) with logical axis names, and the conv kernels' math.

Kernels are stored channels-last: conv3d ``(kt, kh, kw, in, out)`` (PyTorch OIDHW -> DHWIO),
conv2d ``(kh, kw, in, out)`` (OIHW -> HWIO).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax import lax

from cogvideox_jax.parallel.height_split import split_padding
from cogvideox_jax.parallel.logical_axes import logical_init

# PyTorch's default conv init (kaiming_uniform(a=sqrt(5))) is uniform with variance 1/(3 fan_in).
torch_like_conv_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")

_KERNEL_NAMES = {
    5: ("conv_t", "conv_h", "conv_w", "conv_in", "conv_out"),
    4: ("conv_h", "conv_w", "conv_in", "conv_out"),
}


class ConvWeights(nn.Module):
    """Holds ``kernel`` and ``bias`` of one convolution; returns them cast to ``dtype``."""

    kernel_shape: Sequence[int]
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self):
        shape = tuple(self.kernel_shape)
        kernel = self.param(
            "kernel", logical_init(torch_like_conv_init, _KERNEL_NAMES[len(shape)]), shape, self.param_dtype
        )
        bias = self.param("bias", logical_init(nn.initializers.zeros, ("conv_out",)), (shape[-1],), self.param_dtype)
        return kernel.astype(self.dtype), bias.astype(self.dtype)


# Frames of at least this many elements (H * W * C) are convolved one output frame at a time (see
# ``conv3d_valid_time``): at the real VAE's 128-channel full-resolution decoder levels this is faster
# and needs a fraction of the temporaries; on small frames the loop's overhead does not pay.
FRAME_LOOP_MIN_ELEMENTS = 128 * 128 * 64


def use_frame_loop(frame_elements: int, frames: int) -> bool:
    """Whether a per-frame op over ``frames`` output frames of ``frame_elements`` elements each runs
    as a ``frame_loop`` (see ``FRAME_LOOP_MIN_ELEMENTS``)."""
    return frames > 1 and frame_elements >= FRAME_LOOP_MIN_ELEMENTS


def frame_loop(output_frame, count: int):
    """``stack([output_frame(i) for i in range(count)], axis=1)`` as a loop that writes each frame in
    place: ``output_frame(i)`` (traced ``i``) gives frame i, (B, ...). The buffer starts as frame 0
    broadcast, a fresh buffer the loop updates in place (a constant zeros buffer would be shared by
    every loop of the same shape, and copied into each)."""
    first = output_frame(0)
    out = jnp.broadcast_to(first[:, None], (first.shape[0], count, *first.shape[1:]))
    return lax.fori_loop(1, count, lambda i, o: lax.dynamic_update_index_in_dim(o, output_frame(i), i, 1), out)


def conv3d_valid_time(x, kernel, bias, spatial_padding, front=None):
    """Conv over (T, H, W) of channels-last ``x`` (B, T, H, W, C): no time padding, given spatial.

    ``front`` (optional): frames that precede ``x`` in time (a causal conv's padding or cache), either
    an array (B, F, H, W, C) or an int F meaning frame 0 of ``x`` repeated F times; the conv runs over
    ``concat(front, x)`` without that concatenation being materialised on the frame-loop path.
    ``x`` may be ``DeferredFrames`` (a norm applied where the loop reads each frame).

    Written as a sum over the time taps of 2D convolutions of the frames, which XLA:CPU runs much
    faster than a native 3D convolution and which is exact. Small frames: each tap is one 2D
    convolution of all frames batched as B*T' (the tap's time slice is a copy of the input). Large
    frames (``FRAME_LOOP_MIN_ELEMENTS``): a loop over the output frames, each the sum of ``kt``
    single-frame 2D convolutions written in place into the output; the same sums in the same order,
    so the same result, with one output frame's inputs in flight instead of ``kt`` sliced copies of
    the padded clip.
    """
    kt, kh, kw = kernel.shape[:3]
    nf = 0 if front is None else front if isinstance(front, int) else front.shape[1]
    t_out = nf + x.shape[1] - kt + 1
    loop = use_frame_loop(int(np.prod(x.shape[2:])), t_out)
    deferred = hasattr(x, "materialize")  # DeferredFrames (deferred_frames.py): never under a split
    if deferred and not loop:
        x, deferred = x.materialize(), False
    padding = spatial_padding
    if not deferred:
        x, padding = split_padding(x, spatial_padding)
    if front is not None and not isinstance(front, int):
        front, _ = split_padding(front, spatial_padding)
    b, t, h, w, c = x.shape
    (ph0, ph1), (pw0, pw1) = padding

    def conv2d(frames, k):
        return lax.conv_general_dilated(frames, k, window_strides=(1, 1), padding=((ph0, ph1), (pw0, pw1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    if loop:
        def frame(s):  # frame s of concat(front, x), (B, H, W, C)
            i = jnp.maximum(s - nf, 0)
            xs = x.frame(i) if deferred else lax.dynamic_index_in_dim(x, i, axis=1, keepdims=False)
            if front is None or isinstance(front, int):
                return xs
            fs = lax.dynamic_index_in_dim(front, jnp.minimum(s, nf - 1), axis=1, keepdims=False)
            return jnp.where(s < nf, fs, xs)

        def output_frame(i):
            y = conv2d(frame(i), kernel[0])
            for j in range(1, kt):
                y = y + conv2d(frame(i + j), kernel[j])
            return y + bias

        return frame_loop(output_frame, t_out)
    if isinstance(front, int):
        front = jnp.repeat(x[:, :1], front, axis=1)
    if front is not None:
        x = jnp.concatenate([front.astype(x.dtype), x], axis=1)
    out = None
    for i in range(kt):
        yi = conv2d(x[:, i : i + t_out].reshape(b * t_out, h, w, c), kernel[i])
        out = yi if out is None else out + yi
    out = out + bias
    return out.reshape(b, t_out, *out.shape[1:])


def conv3d_native(x, kernel, bias, spatial_padding):
    """Reference formulation: one native 3D convolution."""
    x, spatial_padding = split_padding(x, spatial_padding)
    y = lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(1, 1, 1),
        padding=((0, 0),) + tuple(spatial_padding),
        dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
    )
    return y + bias


def conv2d_frames(x, kernel, bias, stride=1, padding=((1, 1), (1, 1))):
    """Per-frame 2D conv of (B, T, H, W, C)."""
    x, padding = split_padding(x, padding)
    b, t = x.shape[:2]
    y = lax.conv_general_dilated(
        x.reshape(b * t, *x.shape[2:]),
        kernel,
        window_strides=(stride, stride),
        padding=padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    y = y + bias
    return y.reshape(b, t, *y.shape[1:])
