"""Training inputs built from the model's own prediction (against exposure bias).

In training, ``x_t`` is always a clean clip plus noise, so near the data the network learns to keep
whatever outline ``x_t`` shows. In sampling, ``x_t`` comes from the network's own earlier steps; if
those rounded an outline off (the mean over what mid-level noise leaves undecided), the later
steps keep the rounded outline, whatever the caption names (cogvideox_jax/shapes/README.md: one-step predictions from t = 400 come out round for nearly every caption). This module
builds, for a fraction of the batch rows, the input the sampler would hand the network:

1. noise the clean latent ``x0`` to a higher timestep ``s = t + jump`` (jump uniform in
   ``[1, max_jump]``, capped at T − 1);
2. predict ``x̂0`` there with the current weights (no gradient);
3. noise ``x̂0`` back to ``t`` with fresh noise: ``x_t' = √ᾱ_t·x̂0 + √(1−ᾱ_t)·ε'``.

The target stays the clean clip: the noise that would make ``x_t'`` out of ``x0``,
``ε* = (x_t' − √ᾱ_t·x0)/√(1−ᾱ_t)``, so the usual v-loss (``diffusion_loss.v_prediction_loss`` with
``ε*``) teaches the network to move its own prediction back toward the data, e.g. to give a
rounded blob the corners the caption asks for. This is scheduled sampling for diffusion (Ning et al.
2023, "Input Perturbation Reduces Exposure Bias in Diffusion Models", use Gaussian input noise as a
proxy; Ren et al. 2024, "Multi-Step Denoising Scheduled Sampling", roll the model out as here).

Rows with ``t < min_t`` keep the plain input: there ``√(1−ᾱ_t)`` is small and ``ε*`` would carry
the prediction error magnified by ``√ᾱ_t/√(1−ᾱ_t)`` (≈ 3 at t = 100, ≈ 34 at t = 0). The prediction
costs one forward pass of the batch (up to a third of a training step; +10–35 % measured); with
gradient accumulation it runs per micro-batch (``rollout_draws`` once for the batch, then
``rolled_inputs`` on each micro-batch's rows), so it needs no more memory than the micro-batch.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from cogvideox_jax.diffusion.training_targets import add_noise, v_to_x0


def rollout_draws(key, t, shape, num_timesteps: int, fraction: float, max_jump: int, min_t: int = 100) -> dict:
    """The random part of the rollout for a whole batch, drawn once so that applying it to any split
    of the rows (``rolled_inputs`` per micro-batch) gives each row the same input: ``used`` (B,) bool,
    ``s`` (B,) the higher timestep, ``fresh`` (B, …) the new noise."""
    k_use, k_jump, k_fresh = jax.random.split(key, 3)
    bsz = shape[0]
    s = jnp.minimum(t + jax.random.randint(k_jump, (bsz,), 1, max_jump + 1), num_timesteps - 1)
    used = (jax.random.uniform(k_use, (bsz,)) < fraction) & (t >= min_t)
    return {"used": used, "s": s, "fresh": jax.random.normal(k_fresh, shape, jnp.float32)}


def rolled_inputs(predict_v: Callable, x0, noise, t, alphas_cumprod, draws: dict):
    """``(x_in, noise_target, used)`` for these rows, with their ``rollout_draws``: one forward pass of
    ``predict_v`` on these rows only (so a gradient-accumulation micro-batch never holds more)."""
    ac = alphas_cumprod
    plain = add_noise(ac, x0, noise, t)
    s = draws["s"]
    x_s = add_noise(ac, x0, noise, s)
    x0_hat = v_to_x0(ac, x_s, jax.lax.stop_gradient(predict_v(x_s, s).astype(jnp.float32)), s)
    rolled = add_noise(ac, x0_hat, draws["fresh"].astype(jnp.float32), t)
    a_t = ac[t].reshape((-1,) + (1,) * (x0.ndim - 1))
    rolled_target = (rolled - jnp.sqrt(a_t) * x0) / jnp.sqrt(1.0 - a_t)   # the noise making `rolled` of x0
    used = draws["used"]
    pick = used.reshape(a_t.shape)
    return jnp.where(pick, rolled, plain), jnp.where(pick, rolled_target, noise), used


def rollout_inputs(predict_v: Callable, x0, noise, t, alphas_cumprod, key, fraction: float,
                   max_jump: int, min_t: int = 100):
    """``(x_in, noise_target, used)`` for one batch.

    ``predict_v(x, timesteps) -> v``: the network (its output is not differentiated). ``x0``, ``noise``
    (B, …) float32; ``t`` (B,) int timesteps; ``alphas_cumprod`` (T,) float32. A row uses the rollout
    input with probability ``fraction`` if ``t >= min_t``; the others get the plain
    ``x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·noise`` and ``noise``.
    Always ``x_in = √ᾱ_t·x0 + √(1−ᾱ_t)·noise_target``: the target is the clean clip.
    """
    draws = rollout_draws(key, t, x0.shape, alphas_cumprod.shape[0], fraction, max_jump, min_t)
    return rolled_inputs(predict_v, x0, noise, t, alphas_cumprod, draws)
