"""Expert adaptive LayerNorm: one shared LayerNorm for text and video tokens, with separate
shift / scale / gate for each modality computed from the time embedding (the "experts")."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cogvideox_jax.parallel.logical_axes import constrain, logical_init

# the modulation (B, k·D) split over the batch like the activations it scales, its features whole: as
# the (FSDP-sharded) kernel's output it would be split over fsdp / sequence, and its k chunks of D cut
# across those shards (the partitioner then replicates and re-splits it every block)
_MOD = ("activation_batch", "activation_embed")


def layer_norm(name: str, eps: float, dtype, param_dtype, axis_name: str = "norm"):
    return nn.LayerNorm(epsilon=eps, dtype=dtype, param_dtype=param_dtype, name=name,
                        scale_init=logical_init(nn.initializers.ones, (axis_name,)),
                        bias_init=logical_init(nn.initializers.zeros, (axis_name,)))


class ExpertAdaLayerNormZero(nn.Module):
    """``CogVideoXLayerNormZero``: returns (video, text, video_gate, text_gate)."""

    dim: int
    eps: float = 1e-5
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, video, text, temb):
        mod = nn.Dense(6 * self.dim, dtype=self.dtype, param_dtype=self.param_dtype, name="linear",
                       kernel_init=logical_init(nn.initializers.zeros, ("time_embed", "embed")),
                       bias_init=logical_init(nn.initializers.zeros, ("embed",)))(nn.silu(temb))
        mod = constrain(mod, _MOD)
        shift, scale, gate, t_shift, t_scale, t_gate = jnp.split(mod[:, None, :], 6, axis=-1)
        norm = layer_norm("norm", self.eps, self.dtype, self.param_dtype)
        video = norm(video) * (1 + scale) + shift
        text = norm(text) * (1 + t_scale) + t_shift
        return video, text, gate, t_gate


class AdaLayerNormOut(nn.Module):
    """Final ``AdaLayerNorm`` (chunk order shift, scale): ``LN(x)(1 + scale) + shift``."""

    dim: int
    eps: float = 1e-5
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, temb):
        mod = nn.Dense(2 * self.dim, dtype=self.dtype, param_dtype=self.param_dtype, name="linear",
                       kernel_init=logical_init(nn.initializers.zeros, ("time_embed", "embed")),
                       bias_init=logical_init(nn.initializers.zeros, ("embed",)))(nn.silu(temb))
        shift, scale = jnp.split(constrain(mod, _MOD)[:, None, :], 2, axis=-1)
        return layer_norm("norm", self.eps, self.dtype, self.param_dtype)(x) * (1 + scale) + shift
