"""Non-uniform training timestep densities: where on the noise schedule the training samples land.

CogVideoX trains with t uniform over [0, T) (``timestep_sampling.py``). Two standard alternatives,
both expressed as a probability table over the integer timesteps and sampled by inverse CDF:

- ``"logit_normal"`` (Esser et al. 2024, SD3 §3.1): ``u = t/T`` with ``logit(u) ~ N(mean, std)``;
  a negative mean moves samples toward low noise (small t), a positive one toward high noise.
- ``"min_snr"`` (Hang et al. 2023, Min-SNR-γ): the min-SNR loss weight of a v-prediction model,
  ``min(SNR_t, γ) / (SNR_t + 1)``, as a density instead of a weight (the same expected gradient up
  to a constant, with lower variance): the peak is where SNR_t = γ, with little mass near t = 0
  (SNR → ∞) and at the zero-SNR end.

A density replaces the uniform draw; SAT's explicit-uniform stratification applies to uniform only.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

DENSITIES = ("uniform", "logit_normal", "min_snr")


def timestep_probabilities(kind: str, alphas_cumprod: np.ndarray, logit_mean: float = 0.0,
                           logit_std: float = 1.0, min_snr_gamma: float = 5.0) -> np.ndarray:
    """Probabilities (float64, length T, sum 1) of each integer timestep under density ``kind``."""
    ac = np.asarray(alphas_cumprod, np.float64)
    n = ac.shape[0]
    if kind == "uniform":
        p = np.ones(n)
    elif kind == "logit_normal":
        if logit_std <= 0:
            raise ValueError(f"timestep_logit_std must be > 0, got {logit_std}")
        u = (np.arange(n) + 0.5) / n
        z = np.log(u / (1.0 - u))
        # density of u: N(logit(u); mean, std) / (u (1 − u)); each integer t covers width 1/n in u
        p = np.exp(-0.5 * ((z - logit_mean) / logit_std) ** 2) / (u * (1.0 - u))
    elif kind == "min_snr":
        if min_snr_gamma <= 0:
            raise ValueError(f"min_snr_gamma must be > 0, got {min_snr_gamma}")
        snr = ac / np.maximum(1.0 - ac, 1e-20)
        p = np.minimum(snr, min_snr_gamma) / (snr + 1.0)
    else:
        raise ValueError(f"unknown timestep density {kind!r}; use one of {', '.join(DENSITIES)}")
    if not np.all(np.isfinite(p)) or p.sum() <= 0:
        raise ValueError(f"timestep density {kind!r} has no mass on this schedule")
    return p / p.sum()


def sample_timesteps(key, batch_size: int, probabilities: np.ndarray):
    """Integer timesteps (B,) int32 drawn i.i.d. from ``probabilities`` (inverse CDF of one uniform)."""
    cdf = jnp.asarray(np.cumsum(probabilities) / np.sum(probabilities), jnp.float32)
    u = jax.random.uniform(key, (batch_size,), jnp.float32)
    t = jnp.searchsorted(cdf, u, side="right")
    return jnp.minimum(t, cdf.shape[0] - 1).astype(jnp.int32)
