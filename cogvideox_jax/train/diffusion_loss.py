"""The CogVideoX training objective: v-prediction, weighted x0 loss with w = 1/(1 − ᾱ).

SAT (``VideoDiffusionLoss`` with ``ZeroSNRDDPMDiscretization``):
``x_t = √ᾱ·x0 + √(1−ᾱ)·ε``; the network sees the integer timestep t and predicts v;
``D = √ᾱ·x_t − √(1−ᾱ)·F``; ``loss = mean(w·(D − x0)²)`` with ``w = 1/(1−ᾱ)``. Algebra:
``D − x0 = √(1−ᾱ)·(v − F)`` with ``v = √ᾱ·ε − √(1−ᾱ)·x0``, so the loss is exactly the MSE on v.
We compute it as the MSE on v (no 1/(1−ᾱ) blow-up near t = 0); ``weighted_x0_loss`` is the literal
SAT formula, kept for the equivalence test. No min-SNR weighting, no offset noise.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def training_alphas_cumprod(num_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012,
                            snr_shift_scale: float = 1.0, zero_terminal_snr: bool = True) -> np.ndarray:
    """ᾱ_t (float64, length ``num_timesteps``) of the CogVideoX training discretisation (SAT
    ``ZeroSNRDDPMDiscretization``): scaled-linear betas → ᾱ = cumprod(1 − β) → SNR shift
    ``ᾱ/(s + (1−s)ᾱ)`` (2b: s = 3, 5b/1.5: s = 1) → zero-terminal-SNR rescale of √ᾱ.
    The same table as the samplers' (``cogvideox_jax.diffusion.noise_schedule``), which computes it.
    """
    from configs.scheduler import SchedulerConfig
    from cogvideox_jax.diffusion.noise_schedule import alphas_cumprod

    return alphas_cumprod(SchedulerConfig(num_train_timesteps=num_timesteps, beta_start=beta_start,
                                          beta_end=beta_end, snr_shift_scale=snr_shift_scale,
                                          rescale_betas_zero_snr=zero_terminal_snr))


def _bcast(a, x):
    return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))


def add_noise(x0, noise, alphas_cumprod_t):
    """``x_t = √ᾱ·x0 + √(1−ᾱ)·ε`` (ᾱ per batch row)."""
    a = _bcast(alphas_cumprod_t, x0)
    return jnp.sqrt(a) * x0 + jnp.sqrt(1.0 - a) * noise


def velocity_target(x0, noise, alphas_cumprod_t):
    """``v = √ᾱ·ε − √(1−ᾱ)·x0``."""
    a = _bcast(alphas_cumprod_t, x0)
    return jnp.sqrt(a) * noise - jnp.sqrt(1.0 - a) * x0


def v_prediction_loss(v_pred, x0, noise, alphas_cumprod_t, per_example: bool = False, weights=None):
    """MSE between the predicted and the true velocity, in float32; mean over all elements
    (``per_example``: mean over non-batch dims, shape (B,)). ``weights``: optional per-element weights
    broadcasting against ``x0`` (e.g. ``cogvideox_jax/shapes/object_loss_weight.py``), applied before the mean."""
    v = velocity_target(x0.astype(jnp.float32), noise.astype(jnp.float32), alphas_cumprod_t.astype(jnp.float32))
    err = jnp.square(v_pred.astype(jnp.float32) - v)
    if weights is not None:
        err = err * weights
    per = jnp.mean(err.reshape(err.shape[0], -1), axis=1)
    return per if per_example else jnp.mean(per)


def weighted_x0_loss(v_pred, x0, noise, alphas_cumprod_t):
    """The literal SAT loss ``mean(w·(D − x0)²)``, ``w = 1/(1−ᾱ)`` (unstable where ᾱ → 1)."""
    a = _bcast(alphas_cumprod_t.astype(jnp.float32), x0)
    x_t = add_noise(x0, noise, alphas_cumprod_t)
    denoised = jnp.sqrt(a) * x_t - jnp.sqrt(1.0 - a) * v_pred
    return jnp.mean(jnp.square(denoised - x0) / (1.0 - a))
