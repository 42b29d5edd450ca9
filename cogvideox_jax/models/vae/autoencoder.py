"""The CogVideoX 3D causal VAE (diffusers ``AutoencoderKLCogVideoX``) as a Flax Linen module.

Channels-last: video (B, T, H, W, C) in [-1, 1], latents (B, t, h, w, latent_channels).

    vae, params = load_diffusers("path/to/vae")
    post = vae.apply({"params": params}, video, method="encode")   # DiagonalGaussian
    frames = vae.apply({"params": params}, latents, method="decode")

``encode`` / ``decode`` take ``frame_batching="diffusers" | "whole"``, ``chunk_frames`` (default
the reference's 8 video / 2 latent frames) and ``tiling`` (False / True / a ``TilingConfig``).
``vae.config.scaling_factor`` is NOT applied inside encode/decode.
"""
from __future__ import annotations

from typing import Any, Optional, Union

import flax.linen as nn
import jax.numpy as jnp

from configs.vae import VAEConfig
from cogvideox_jax.models.vae.causal_conv3d import PointwiseConv3d
from cogvideox_jax.models.vae.decoder import Decoder3D
from cogvideox_jax.models.vae.encoder import Encoder3D
from cogvideox_jax.models.vae.frame_batching import run_frame_batched
from cogvideox_jax.models.vae.posterior import DiagonalGaussian
from cogvideox_jax.models.vae.tiling import TilingConfig, tiled_apply


class AutoencoderKLCogVideoX(nn.Module):
    config: VAEConfig = VAEConfig()
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self):
        cfg = self.config
        self.encoder = Encoder3D(cfg, self.dtype, self.param_dtype)
        self.decoder = Decoder3D(cfg, self.dtype, self.param_dtype)
        if cfg.use_quant_conv:
            self.quant_conv = PointwiseConv3d(2 * cfg.latent_channels, self.dtype, self.param_dtype)
        if cfg.use_post_quant_conv:
            self.post_quant_conv = PointwiseConv3d(cfg.latent_channels, self.dtype, self.param_dtype)

    # pointwise quant convs commute with frame batching, so they run on the whole clip
    def _encode_moments(self, x, frame_batching, chunk_frames):
        chunk = chunk_frames or self.config.num_sample_frames_batch_size
        h = run_frame_batched(self.encoder, x, mode=frame_batching, chunk=chunk)
        if self.config.use_quant_conv:
            h = self.quant_conv(h)
        return h

    def _decode_frames(self, z, frame_batching, chunk_frames):
        chunk = chunk_frames or self.config.num_latent_frames_batch_size
        if self.config.use_post_quant_conv:
            z = self.post_quant_conv(z)
        return run_frame_batched(self.decoder, z, mode=frame_batching, chunk=chunk)

    def encode(
        self,
        x,
        frame_batching: str = "diffusers",
        tiling: Union[bool, TilingConfig, None] = False,
        chunk_frames: Optional[int] = None,
    ) -> DiagonalGaussian:
        """Video (B, T, H, W, C) in [-1, 1] -> posterior over latents (B, 1 + (T-1)//4, H/8, W/8, C)."""
        fn = lambda v: self._encode_moments(v, frame_batching, chunk_frames)  # noqa: E731
        tcfg = TilingConfig.resolve(tiling, self.config)
        if tcfg is not None and tcfg.needs_tiling(x.shape[2:4], latent=False, config=self.config):
            moments = tiled_apply(fn, x, tcfg, self.config, encode=True)
        else:
            moments = fn(x)
        return DiagonalGaussian.from_moments(moments.astype(jnp.float32))

    def decode(
        self,
        z,
        frame_batching: str = "diffusers",
        tiling: Union[bool, TilingConfig, None] = False,
        chunk_frames: Optional[int] = None,
    ):
        """Latents (B, t, h, w, C) (already divided by the scaling factor) -> video (B, T, H, W, 3)."""
        fn = lambda v: self._decode_frames(v, frame_batching, chunk_frames)  # noqa: E731
        tcfg = TilingConfig.resolve(tiling, self.config)
        if tcfg is not None and tcfg.needs_tiling(z.shape[2:4], latent=True, config=self.config):
            out = tiled_apply(fn, z, tcfg, self.config, encode=False)
        else:
            out = fn(z)
        return out.astype(jnp.float32)

    def __call__(self, x, sample_posterior: bool = False, key=None, frame_batching: str = "diffusers"):
        """Encode then decode (``vae.init(key, video)`` creates every parameter through this)."""
        post = self.encode(x, frame_batching=frame_batching)
        z = post.sample(key) if sample_posterior else post.mode()
        return self.decode(z, frame_batching=frame_batching)
