"""Per-latent-cell loss weights that favour the object over a flat background.

For clips of one object on a plain background (the shapes dataset), the background's latent is,
per clip, latent frame and channel, the spatial median of the clean latents; a cell whose latent
vector lies farther than ``threshold`` (L2 over channels, in the transformer's normalized latent
units) from it belongs to the object. Those cells get weight ``1 + extra``, the others 1.

Why: most of the v-loss is the object's position and color at high noise, and an outline is a small
part of it; weighting the object's cells makes the outline a larger part of every step's gradient
(cogvideox_jax/shapes/README.md). ``extra = 0`` gives weight 1 everywhere.

The pixel-space counterpart for the VAE is ``train/vae_objective.foreground_weights`` (one median per
clip, max-abs distance over RGB with a threshold in pixel units). Here a latent cell's channels are
compared as one vector, with a threshold on the normalized latents' scale. The median is per latent
frame; one per clip would do as well on the shapes data, whose backgrounds are static (their latent
frames' background medians differ by ~0.03).
"""
from __future__ import annotations

import jax.numpy as jnp


def object_loss_weights(x0, extra: float, threshold: float = 1.5):
    """``x0`` (B, t, h, w, C) clean latents -> weights (B, t, h, w, 1), float32."""
    x0 = x0.astype(jnp.float32)
    background = jnp.median(x0, axis=(2, 3), keepdims=True)
    distance = jnp.sqrt(jnp.sum(jnp.square(x0 - background), axis=-1, keepdims=True))
    return 1.0 + extra * (distance > threshold).astype(jnp.float32)
