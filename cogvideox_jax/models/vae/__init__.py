"""CogVideoX 3D causal VAE (Flax Linen, channels-last)."""
from cogvideox_jax.models.vae.autoencoder import AutoencoderKLCogVideoX
from cogvideox_jax.models.vae.posterior import DiagonalGaussian
from cogvideox_jax.models.vae.tiling import TilingConfig

__all__ = ["AutoencoderKLCogVideoX", "DiagonalGaussian", "TilingConfig"]
