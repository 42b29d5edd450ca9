"""CogVideoX 3D causal VAE (Flax Linen, channels-last). To decode latents to a video with a checkpoint's
weights: ``cogvideox_jax.pipeline.VAEDecoder`` / ``decode_video``."""
from cogvideox_jax.models.vae.autoencoder import AutoencoderKLCogVideoX
from cogvideox_jax.models.vae.posterior import DiagonalGaussian
from cogvideox_jax.models.vae.tiling import TilingConfig

__all__ = ["AutoencoderKLCogVideoX", "DiagonalGaussian", "TilingConfig"]
