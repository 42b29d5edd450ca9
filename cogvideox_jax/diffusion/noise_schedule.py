"""ᾱ_t of the CogVideoX schedulers, computed on the host in float64 exactly as the reference:
scaled-linear betas (linspace of sqrt, squared), cumulative product, SNR shift
``ᾱ / (s + (1 - s) ᾱ)``, then the zero-terminal-SNR rescale of ``sqrt(ᾱ)``."""
from __future__ import annotations

import numpy as np

from configs.scheduler import SchedulerConfig


def betas(config: SchedulerConfig) -> np.ndarray:
    """float64 for ``scaled_linear`` (as the reference). ``linear`` (unused by CogVideoX) follows the
    reference's float32 chain only approximately: ``torch.linspace`` rounds ~30% of the float32
    betas 1 ulp differently from ``np.linspace`` (ᾱ then agrees to ~1e-6 relative, not bitwise)."""
    n = config.num_train_timesteps
    if config.beta_schedule == "scaled_linear":
        return np.linspace(config.beta_start**0.5, config.beta_end**0.5, n, dtype=np.float64) ** 2
    return np.linspace(config.beta_start, config.beta_end, n, dtype=np.float32)


def rescale_zero_terminal_snr(alphas_cumprod: np.ndarray) -> np.ndarray:
    s = np.sqrt(alphas_cumprod)
    s0, s_t = s[0], s[-1]
    s = (s - s_t) * (s0 / (s0 - s_t))
    return s**2


def alphas_cumprod(config: SchedulerConfig) -> np.ndarray:
    """float64 ``(num_train_timesteps,)`` ᾱ after the SNR shift and (optional) zero-terminal-SNR rescale."""
    b = betas(config)
    # torch's float32 cumprod accumulates in double: do the same, then round back to b's dtype
    ac = np.cumprod((b.dtype.type(1.0) - b).astype(np.float64)).astype(b.dtype)
    s = b.dtype.type(config.snr_shift_scale)
    ac = ac / (s + (1 - s) * ac)
    if config.rescale_betas_zero_snr:
        ac = rescale_zero_terminal_snr(ac)
    return ac.astype(np.float64)


def final_alpha_cumprod(config: SchedulerConfig, ac: np.ndarray) -> float:
    return 1.0 if config.set_alpha_to_one else float(ac[0])
