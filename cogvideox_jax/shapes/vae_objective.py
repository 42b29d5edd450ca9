"""The VAE training objective: reconstruction (L1 + MSE) of a posterior sample plus a KL term.

``loss = l1_weight·mean_w|x̂ − x| + mse_weight·mean_w(x̂ − x)² + kl_weight·mean_KL`` where ``x̂`` decodes a
sample of the posterior and ``mean_KL`` is the KL to N(0, I) averaged over latent elements. Both
passes run in ``whole`` frame-batching mode (one pass, GroupNorm over the clip), so the same
weights decode in either mode afterwards.

``mean_w`` is a pixel-weighted mean: with ``foreground > 0`` the pixels that differ from their clip's
background (the per-clip, per-channel median color) weigh ``1 + foreground``. Clips of small objects
on flat backgrounds (the shapes dataset: objects cover ~5% of the pixels) are otherwise reconstructed
background-first and the objects come back washed out; ``foreground = 0`` is the plain mean.
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
    foreground: float = 0.0


def foreground_mask(video, threshold: float = 0.1):
    """``(B, T, H, W, 1)`` bool: the pixels of ``video`` (B, T, H, W, C) in [-1, 1] that differ from
    their clip's median color by more than ``threshold`` in any channel (the object, on the shapes
    data's flat backgrounds)."""
    background = jnp.median(video.reshape(video.shape[0], -1, video.shape[-1]), axis=1)
    return jnp.abs(video - background[:, None, None, None, :]).max(axis=-1, keepdims=True) > threshold


def foreground_weights(video, foreground: float, threshold: float = 0.1):
    """Per-pixel weights ``(B, T, H, W, 1)``: ``1 + foreground`` on ``foreground_mask``, else 1."""
    return 1.0 + foreground * foreground_mask(video, threshold).astype(jnp.float32)


def _reconstruction_terms(recon, video, foreground: float):
    """``(l1, mse_w, mse)``: the (foreground-weighted) L1 and MSE, and the plain MSE."""
    err = recon.astype(jnp.float32) - video.astype(jnp.float32)
    sq = jnp.square(err)
    mse = jnp.mean(sq)
    if not foreground:
        return jnp.mean(jnp.abs(err)), mse, mse
    w = foreground_weights(video.astype(jnp.float32), foreground)
    norm = jnp.sum(w) * err.shape[-1]
    return jnp.sum(w * jnp.abs(err)) / norm, jnp.sum(w * sq) / norm, mse


def vae_loss(vae, params, video, key, weights: VAELossWeights = VAELossWeights()):
    """``(loss, metrics)`` for a video batch ``(B, T, H, W, 3)`` in [-1, 1]."""
    post = vae.apply({"params": params}, video, frame_batching="whole", method="encode")
    z = post.sample(key)
    recon = vae.apply({"params": params}, z, frame_batching="whole", method="decode")
    l1, mse_w, mse = _reconstruction_terms(recon, video, weights.foreground)
    kl = jnp.mean(post.kl()) / (z[0].size)
    loss = weights.l1 * l1 + weights.mse * mse_w + weights.kl * kl
    # PSNR of the [0, 1] video: MSE on [-1, 1] is 4x that on [0, 1]
    psnr = 10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-12))
    return loss, {"loss": loss, "l1": l1, "mse": mse, "kl": kl, "psnr": psnr,
                  "latent_std": jnp.std(post.mean)}


def make_vae_train_step(vae, optimizer, weights: VAELossWeights, train_encoder: bool = True):
    """``step(params, opt_state, video, key) -> (params, opt_state, metrics)`` (un-jitted: the caller
    jits it with its shardings).

    ``train_encoder=False`` trains the decoder only: the encoder's weights get no gradient (its
    backward pass is not computed) and no update, so latents encoded before and after the step are
    bit-identical (a decoder fine-tune keeps a transformer trained on those latents valid)."""
    import optax

    def step(params, opt_state, video, key):
        def loss(p):
            if not train_encoder:
                p = {**p, "encoder": jax.lax.stop_gradient(p["encoder"])}
            return vae_loss(vae, p, video, key, weights)

        (_, metrics), grads = jax.value_and_grad(loss, has_aux=True)(params)
        metrics["grad_norm"] = optax.global_norm(grads)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        if not train_encoder:
            updates = {**updates, "encoder": jax.tree.map(jnp.zeros_like, updates["encoder"])}
        return optax.apply_updates(params, updates), opt_state, metrics

    return step
