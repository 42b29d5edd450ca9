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

from cogvideox_jax.diffusion.training_targets import add_noise, loss_weight, v_to_x0, velocity_target


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


def v_prediction_loss(ac, v_pred, x0, noise, t, weights=None):
    """MSE between the predicted and the true velocity at timesteps ``t`` (B,) of the ᾱ table ``ac``
    (``diffusion/training_targets.py``), in float32: the mean over rows of each row's mean. ``weights``:
    optional per-element weights broadcasting against ``x0`` (``train_step.StepOptions.loss_weights``),
    applied before the means."""
    v = velocity_target(ac, x0.astype(jnp.float32), noise.astype(jnp.float32), t)
    err = jnp.square(v_pred.astype(jnp.float32) - v)
    if weights is not None:
        err = err * weights
    return jnp.mean(jnp.mean(err.reshape(err.shape[0], -1), axis=1))


def weighted_x0_loss(ac, v_pred, x0, noise, t):
    """The literal SAT loss ``mean(w·(D − x0)²)``, ``w = 1/(1−ᾱ)`` (unstable where ᾱ → 1)."""
    x_t = add_noise(ac, x0, noise, t)
    w = loss_weight(ac, t).reshape((-1,) + (1,) * (x0.ndim - 1))
    return jnp.mean(jnp.square(v_to_x0(ac, x_t, v_pred, t) - x0) * w)
