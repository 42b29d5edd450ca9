"""Training-side helpers of the v-prediction objective (vectorised over integer timesteps).

Every helper takes ``ac``: the float32 ᾱ table from :func:`alphas_cumprod_table` (or a
``SchedulerConfig``, converted on the fly), and a batch of integer timesteps ``t`` of shape
``(B,)`` (or a scalar); the per-sample coefficients broadcast over the trailing axes. As in
diffusers ``add_noise`` / ``get_velocity``, ᾱ is cast to float32 *before* the square roots.
"""
from __future__ import annotations

import jax.numpy as jnp

from configs.scheduler import SchedulerConfig
from cogvideox_jax.diffusion.noise_schedule import alphas_cumprod


def alphas_cumprod_table(config: SchedulerConfig):
    """ᾱ as a float32 device array (index it with integer timesteps)."""
    return jnp.asarray(alphas_cumprod(config).astype("float32"))


def _table(ac):
    return alphas_cumprod_table(ac) if isinstance(ac, SchedulerConfig) else ac


def _bcast(a, x):
    return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))


def _coef(ac, t, x):
    return _bcast(jnp.asarray(_table(ac))[t], x)


def add_noise(ac, x0, noise, t):
    """x_t = sqrt(ᾱ_t) x0 + sqrt(1-ᾱ_t) ε."""
    a = _coef(ac, t, x0)
    return jnp.sqrt(a) * x0 + jnp.sqrt(1 - a) * noise


def velocity_target(ac, x0, noise, t):
    """v = sqrt(ᾱ_t) ε - sqrt(1-ᾱ_t) x0 (diffusers ``get_velocity``)."""
    a = _coef(ac, t, x0)
    return jnp.sqrt(a) * noise - jnp.sqrt(1 - a) * x0


def v_to_x0(ac, x_t, v, t):
    """The SAT denoiser relation D = sqrt(ᾱ) x_t - sqrt(1-ᾱ) F."""
    a = _coef(ac, t, x_t)
    return jnp.sqrt(a) * x_t - jnp.sqrt(1 - a) * v


def loss_weight(ac, t):
    """The reference weighting 1 / (1 - ᾱ_t): with it, weighted x0-MSE equals MSE on v."""
    return 1.0 / (1.0 - jnp.asarray(_table(ac))[t])


def v_to_eps(ac, x_t, v, t):
    """ε = sqrt(ᾱ) v + sqrt(1-ᾱ) x_t (the reference's commented-out ``pred_epsilon`` for v-prediction)."""
    a = _coef(ac, t, x_t)
    return jnp.sqrt(a) * v + jnp.sqrt(1 - a) * x_t


def eps_to_x0(ac, x_t, eps, t):
    """x0 = (x_t - sqrt(1-ᾱ) ε) / sqrt(ᾱ) (undefined at ᾱ = 0, i.e. t = 999 under zero-terminal SNR)."""
    a = _coef(ac, t, x_t)
    return (x_t - jnp.sqrt(1 - a) * eps) / jnp.sqrt(a)
