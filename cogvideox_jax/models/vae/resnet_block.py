"""ResNet block of the 3D causal VAE (diffusers ``CogVideoXResnetBlock3D``, no time embedding).

norm1 -> SiLU -> conv1 -> norm2 -> SiLU -> (dropout 0) -> conv2, plus a 1x1x1 shortcut when the
channel count changes. The encoder uses GroupNorm, the decoder SpatialNorm3D conditioned on ``zq``.
"""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from cogvideox_jax.models.vae.causal_conv3d import CausalConv3d, PointwiseConv3d
from cogvideox_jax.models.vae.deferred_frames import worth_deferring
from cogvideox_jax.models.vae.group_norm import GroupNorm
from cogvideox_jax.models.vae.spatial_norm import SpatialNorm3D
from cogvideox_jax.parallel.logical_axes import constrain

VIDEO_AXES = ("activation_batch", "activation_frames", "activation_height", "activation_width", "activation_channels")


class ResnetBlock3D(nn.Module):
    out_channels: int
    num_groups: int = 32
    eps: float = 1e-6
    spatial_norm: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def _norm(self, name, h, zq):
        # on large frames the norm is applied inside the next conv's frame loop (deferred_frames.py)
        defer = worth_deferring(h)
        if self.spatial_norm:
            return SpatialNorm3D(self.num_groups, self.dtype, self.param_dtype, name=name)(h, zq, silu=True, defer=defer)
        return GroupNorm(self.num_groups, self.eps, self.dtype, self.param_dtype, name=name)(h, silu=True, defer=defer)

    @nn.compact
    def __call__(self, x, zq: Optional[jnp.ndarray] = None, cache: Optional[dict] = None):
        cache = cache or {}
        new_cache = {}
        x = constrain(x.astype(self.dtype), VIDEO_AXES)
        h = self._norm("norm1", x, zq)
        h, new_cache["conv1"] = CausalConv3d(self.out_channels, (3, 3, 3), self.dtype, self.param_dtype, name="conv1")(
            h, cache.get("conv1")
        )
        h = self._norm("norm2", h, zq)
        h, new_cache["conv2"] = CausalConv3d(self.out_channels, (3, 3, 3), self.dtype, self.param_dtype, name="conv2")(
            h, cache.get("conv2")
        )
        if x.shape[-1] != self.out_channels:
            x = PointwiseConv3d(self.out_channels, self.dtype, self.param_dtype, name="conv_shortcut")(x)
        return constrain(h + x, VIDEO_AXES), new_cache
