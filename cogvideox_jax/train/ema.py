"""Exponential moving average of the trainable parameters (kept in float32)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def init_ema(params):
    return jax.tree_util.tree_map(lambda p: jnp.array(p, jnp.float32, copy=True), params)  # own buffers (donation)


def update_ema(ema, params, decay: float):
    """``ema ← decay·ema + (1 − decay)·params``."""
    return jax.tree_util.tree_map(lambda e, p: e + (1.0 - decay) * (p.astype(jnp.float32) - e), ema, params)
