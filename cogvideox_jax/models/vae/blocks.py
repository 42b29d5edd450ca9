"""Down / mid / up blocks of the VAE: a stack of ResNet blocks plus an optional resampler.

Each block maps ``(h, zq, cache) -> (h, new_cache)``; the cache dict has one entry per ResNet
(``resnet_{i}``), like diffusers' conv_cache.
"""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from cogvideox_jax.models.vae.down_up_sampling import Downsample3D, Upsample3D
from cogvideox_jax.models.vae.resnet_block import ResnetBlock3D


class ResnetStack(nn.Module):
    """``num_layers`` ResNet blocks (as ``resnets_{i}``) followed by a down/up sampler or nothing."""

    out_channels: int
    num_layers: int
    num_groups: int = 32
    eps: float = 1e-6
    spatial_norm: bool = False
    resample: Optional[str] = None  # None | "down" | "up"
    compress_time: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h, zq=None, cache: Optional[dict] = None):
        cache = cache or {}
        new = {}
        for i in range(self.num_layers):
            h, new[f"resnet_{i}"] = ResnetBlock3D(
                self.out_channels,
                self.num_groups,
                self.eps,
                self.spatial_norm,
                self.dtype,
                self.param_dtype,
                name=f"resnets_{i}",
            )(h, zq, cache.get(f"resnet_{i}"))
        if self.resample == "down":
            h = Downsample3D(self.out_channels, self.compress_time, self.dtype, self.param_dtype, name="downsamplers_0")(h)
        elif self.resample == "up":
            h = Upsample3D(self.out_channels, self.compress_time, self.dtype, self.param_dtype, name="upsamplers_0")(h)
        return h, new
