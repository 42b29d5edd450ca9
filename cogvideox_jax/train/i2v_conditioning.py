"""Image-to-video training conditioning (the reference's noised-image conditioning).

As in diffusers' CogVideoX I2V fine-tuning and SAT: the conditioning image (the clip's first frame
unless ``images.txt`` names one) gets Gaussian noise in *pixel* space with a per-sample
``σ = exp(N(−3, 0.5))`` before the frozen VAE encodes it; its latent frame is padded with zeros to
the clip's latent length, zeroed entirely with probability 5 % (image dropout), and concatenated
with the noisy video latents along channels — the I2V transformer's ``in_channels = 2·C`` input.
The loss stays the v-prediction MSE on the video latents.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

IMAGE_NOISE_LOG_MEAN, IMAGE_NOISE_LOG_STD = -3.0, 0.5
IMAGE_DROPOUT = 0.05


def image_noise_sigma(rng: np.random.Generator, batch: int) -> np.ndarray:
    """Per-sample pixel-noise scale ``exp(N(−3, 0.5))`` (float32, (B,))."""
    return np.exp(rng.normal(IMAGE_NOISE_LOG_MEAN, IMAGE_NOISE_LOG_STD, batch)).astype(np.float32)


def noise_images(rng: np.random.Generator, images: np.ndarray) -> np.ndarray:
    """``images (B, 1, H, W, 3)`` in [-1, 1] plus ``σ_b · ε`` (host side, before VAE encoding)."""
    sigma = image_noise_sigma(rng, images.shape[0]).reshape(-1, *([1] * (images.ndim - 1)))
    return (images + sigma * rng.standard_normal(images.shape, dtype=np.float32)).astype(np.float32)


def drop_images(key, image_latents, rate: float = IMAGE_DROPOUT):
    """Zero whole rows of ``image_latents`` (B, 1, h, w, C) with probability ``rate`` (image dropout)."""
    if rate <= 0:
        return image_latents
    keep = jax.random.bernoulli(key, 1.0 - rate, (image_latents.shape[0],))
    return jnp.where(keep[:, None, None, None, None], image_latents, jnp.zeros_like(image_latents))


def i2v_model_input(noisy_latents, image_latents):
    """``concat([noisy (B,t,h,w,C), image (B,1,h,w,C) padded with zeros to t frames], channels)``."""
    b, t = noisy_latents.shape[:2]
    img = image_latents.astype(noisy_latents.dtype)
    pad = jnp.zeros((b, t - img.shape[1], *img.shape[2:]), img.dtype)
    return jnp.concatenate([noisy_latents, jnp.concatenate([img, pad], axis=1)], axis=-1)


def first_frame_images(video: np.ndarray) -> np.ndarray:
    """The conditioning image of each clip: its first frame, ``(B, 1, H, W, 3)``."""
    return np.asarray(video)[:, :1]
