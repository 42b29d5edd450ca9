"""The VAE training objective: reconstruction (L1 + MSE) of a posterior sample plus a KL term.

``loss = l1_weight·mean|x̂ − x| + mse_weight·mean(x̂ − x)² + kl_weight·mean_KL`` where ``x̂`` decodes a
sample of the posterior and ``mean_KL`` is the KL to N(0, I) averaged over latent elements. Both
passes run in ``whole`` frame-batching mode (one pass, GroupNorm over the clip), so the same
weights decode in either mode afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class VAELossWeights:
    l1: float = 1.0
    mse: float = 1.0
    kl: float = 1e-4


def vae_loss(vae, params, video, key, weights: VAELossWeights = VAELossWeights()):
    """``(loss, metrics)`` for a video batch ``(B, T, H, W, 3)`` in [-1, 1]."""
    post = vae.apply({"params": params}, video, frame_batching="whole", method="encode")
    z = post.sample(key)
    recon = vae.apply({"params": params}, z, frame_batching="whole", method="decode")
    err = recon.astype(jnp.float32) - video.astype(jnp.float32)
    l1 = jnp.mean(jnp.abs(err))
    mse = jnp.mean(jnp.square(err))
    kl = jnp.mean(post.kl()) / (z[0].size)
    loss = weights.l1 * l1 + weights.mse * mse + weights.kl * kl
    # PSNR of the [0, 1] video: MSE on [-1, 1] is 4x that on [0, 1]
    psnr = 10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-12))
    return loss, {"loss": loss, "l1": l1, "mse": mse, "kl": kl, "psnr": psnr,
                  "latent_std": jnp.std(post.mean)}


def make_vae_train_step(vae, optimizer, weights: VAELossWeights):
    """``step(params, opt_state, video, key) -> (params, opt_state, metrics)`` (un-jitted: the caller
    jits it with its shardings)."""
    import optax

    def step(params, opt_state, video, key):
        (_, metrics), grads = jax.value_and_grad(lambda p: vae_loss(vae, p, video, key, weights), has_aux=True)(params)
        metrics["grad_norm"] = optax.global_norm(grads)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics

    return step
