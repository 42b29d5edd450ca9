"""CogVideoX 3D causal VAE (Flax Linen, channels-last).

``VAEDecoder`` / ``decode_video`` (``decode.py``) are the documented way to turn latents into a video:
decoder-only weights and the memory-optimized XLA:CPU scheduler."""
from cogvideox_jax.models.vae.autoencoder import AutoencoderKLCogVideoX
from cogvideox_jax.models.vae.decode import VAEDecoder, decode_video
from cogvideox_jax.models.vae.posterior import DiagonalGaussian
from cogvideox_jax.models.vae.tiling import TilingConfig

__all__ = ["AutoencoderKLCogVideoX", "DiagonalGaussian", "TilingConfig", "VAEDecoder", "decode_video"]
