"""Decoder of the 3D causal VAE (diffusers ``CogVideoXDecoder3D``).

``(z, cache) -> (video, new_cache)``: z (B, t, h, w, latent) -> (B, T, H, W, out_channels). Every
norm is a SpatialNorm3D conditioned on the chunk's latents ``z``; up blocks have
``layers_per_block + 1`` ResNets.
"""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from configs.vae import VAEConfig
from cogvideox_jax.models.vae.blocks import ResnetStack
from cogvideox_jax.models.vae.causal_conv3d import CausalConv3d
from cogvideox_jax.models.vae.deferred_frames import worth_deferring
from cogvideox_jax.models.vae.spatial_norm import SpatialNorm3D


class Decoder3D(nn.Module):
    config: VAEConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z, cache: Optional[dict] = None):
        cfg = self.config
        cache = cache or {}
        new = {}
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        chans = tuple(reversed(cfg.block_out_channels))
        h, new["conv_in"] = CausalConv3d(chans[0], (3, 3, 3), name="conv_in", **kw)(z, cache.get("conv_in"))
        h, new["mid_block"] = ResnetStack(
            chans[0], 2, cfg.norm_num_groups, cfg.norm_eps, spatial_norm=True, name="mid_block", **kw
        )(h, z, cache.get("mid_block"))
        for i, out_ch in enumerate(chans):
            last = i == len(chans) - 1
            h, new[f"up_block_{i}"] = ResnetStack(
                out_ch,
                cfg.layers_per_block + 1,
                cfg.norm_num_groups,
                cfg.norm_eps,
                spatial_norm=True,
                resample=None if last else "up",
                compress_time=i < cfg.temporal_compress_level,
                name=f"up_blocks_{i}",
                **kw,
            )(h, z, cache.get(f"up_block_{i}"))
        h = SpatialNorm3D(cfg.norm_num_groups, name="norm_out", **kw)(h, z, silu=True, defer=worth_deferring(h))
        h, new["conv_out"] = CausalConv3d(cfg.out_channels, (3, 3, 3), name="conv_out", **kw)(h, cache.get("conv_out"))
        return h, new
