"""Encoder of the 3D causal VAE (diffusers ``CogVideoXEncoder3D``).

``(x, cache) -> (moments, new_cache)``: x (B, T, H, W, C_in) -> (B, t, h, w, 2 * latent_channels).
The cache pytree mirrors diffusers' conv_cache dict (one entry per causal conv with kt > 1).
"""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from configs.vae import VAEConfig
from cogvideox_jax.models.vae.blocks import ResnetStack
from cogvideox_jax.models.vae.causal_conv3d import CausalConv3d
from cogvideox_jax.models.vae.deferred_frames import worth_deferring
from cogvideox_jax.models.vae.group_norm import GroupNorm


class Encoder3D(nn.Module):
    config: VAEConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, cache: Optional[dict] = None):
        cfg = self.config
        cache = cache or {}
        new = {}
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        chans = cfg.block_out_channels
        h, new["conv_in"] = CausalConv3d(chans[0], (3, 3, 3), name="conv_in", **kw)(x, cache.get("conv_in"))
        for i, out_ch in enumerate(chans):
            last = i == len(chans) - 1
            h, new[f"down_block_{i}"] = ResnetStack(
                out_ch,
                cfg.layers_per_block,
                cfg.norm_num_groups,
                cfg.norm_eps,
                resample=None if last else "down",
                compress_time=i < cfg.temporal_compress_level,
                name=f"down_blocks_{i}",
                **kw,
            )(h, None, cache.get(f"down_block_{i}"))
        h, new["mid_block"] = ResnetStack(
            chans[-1], 2, cfg.norm_num_groups, cfg.norm_eps, name="mid_block", **kw
        )(h, None, cache.get("mid_block"))
        # the reference hard-codes eps 1e-6 for norm_out
        h = GroupNorm(cfg.norm_num_groups, 1e-6, name="norm_out", **kw)(h, silu=True, defer=worth_deferring(h))
        h, new["conv_out"] = CausalConv3d(2 * cfg.latent_channels, (3, 3, 3), name="conv_out", **kw)(
            h, cache.get("conv_out")
        )
        return h, new
