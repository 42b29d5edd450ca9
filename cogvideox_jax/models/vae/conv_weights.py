"""Convolution parameters (kernel + bias) with logical axis names, and the conv kernels' math.

Kernels are stored channels-last: conv3d ``(kt, kh, kw, in, out)`` (PyTorch OIDHW -> DHWIO),
conv2d ``(kh, kw, in, out)`` (OIHW -> HWIO).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
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


def conv3d_valid_time(x, kernel, bias, spatial_padding):
    """Conv over (T, H, W) of channels-last ``x`` (B, T, H, W, C): no time padding, given spatial.

    Written as a sum over the time taps of 2D convolutions of the frames (batched as B*T'), which
    XLA:CPU runs much faster than a native 3D convolution and which is exact.
    """
    x, spatial_padding = split_padding(x, spatial_padding)
    kt = kernel.shape[0]
    b, t, h, w, c = x.shape
    t_out = t - kt + 1
    (ph0, ph1), (pw0, pw1) = spatial_padding
    out = None
    for i in range(kt):
        xi = x[:, i : i + t_out].reshape(b * t_out, h, w, c)
        yi = lax.conv_general_dilated(
            xi,
            kernel[i],
            window_strides=(1, 1),
            padding=((ph0, ph1), (pw0, pw1)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
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
