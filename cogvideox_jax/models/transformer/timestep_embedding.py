"""Sinusoidal timestep features (diffusers ``Timesteps``) and the ``TimestepEmbedding`` MLP."""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cogvideox_jax.parallel.logical_axes import logical_init


def sinusoidal_features(t, dim: int, flip_sin_to_cos: bool = True, shift: float = 0.0, max_period: int = 10000):
    """``(B,)`` timesteps -> ``(B, dim)`` float32 ``[sin | cos]`` (``[cos | sin]`` when flipped)."""
    half = dim // 2
    exponent = -math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - shift)
    emb = t.astype(jnp.float32)[:, None] * jnp.exp(exponent)[None, :]
    emb = jnp.concatenate([jnp.sin(emb), jnp.cos(emb)], axis=-1)
    if flip_sin_to_cos:
        emb = jnp.concatenate([emb[:, half:], emb[:, :half]], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


class TimestepEmbedding(nn.Module):
    """linear_1 -> SiLU -> linear_2."""

    out_dim: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        dense = lambda name: nn.Dense(  # noqa: E731
            self.out_dim, dtype=self.dtype, param_dtype=self.param_dtype, name=name,
            kernel_init=logical_init(nn.initializers.lecun_normal(), ("time_embed", "time_embed")),
            bias_init=logical_init(nn.initializers.zeros, ("time_embed",)))
        return dense("linear_2")(nn.silu(dense("linear_1")(x)))
