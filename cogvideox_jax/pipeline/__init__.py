"""Sampling: ``CogVideoXPipeline`` (text-to-video and image-to-video); ``VAEDecoder`` / ``decode_video``
(latents -> video with decoder-only weights)."""
from cogvideox_jax.pipeline.cogvideox_pipeline import CogVideoXPipeline
from cogvideox_jax.pipeline.vae_decoder import VAEDecoder, decode_video

__all__ = ["CogVideoXPipeline", "VAEDecoder", "decode_video"]
