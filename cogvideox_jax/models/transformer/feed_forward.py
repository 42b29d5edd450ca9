"""The position-wise feed-forward of a CogVideoX block (``FeedForward`` with tanh-GELU)."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cogvideox_jax.models.mixed_precision_dot import dense_dot_general
from cogvideox_jax.parallel.logical_axes import constrain, logical_init


class FeedForward(nn.Module):
    """Linear(D -> 4D) -> tanh-GELU -> Linear(4D -> D)."""

    dim: int
    mult: int = 4
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    matmul_dtype: str = "float32"  # see models/mixed_precision_dot.py

    @nn.compact
    def __call__(self, x):
        dot = dense_dot_general(self.matmul_dtype)
        h = nn.Dense(self.dim * self.mult, dtype=self.dtype, param_dtype=self.param_dtype, name="proj_in",
                     dot_general=dot, kernel_init=logical_init(nn.initializers.lecun_normal(), ("embed", "mlp")),
                     bias_init=logical_init(nn.initializers.zeros, ("mlp",)))(x)
        h = constrain(nn.gelu(h, approximate=True), ("activation_batch", "activation_length", "activation_mlp"))
        return nn.Dense(self.dim, dtype=self.dtype, param_dtype=self.param_dtype, name="proj_out",
                        dot_general=dot, kernel_init=logical_init(nn.initializers.lecun_normal(), ("mlp", "embed")),
                        bias_init=logical_init(nn.initializers.zeros, ("embed",)))(h)
