"""Joint full attention over [text, video] tokens with per-head QK LayerNorm and RoPE on video only."""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from cogvideox_jax.models.attention import dot_product_attention
from cogvideox_jax.models.mixed_precision_dot import dense_dot_general
from cogvideox_jax.models.transformer.expert_adaln import layer_norm
from cogvideox_jax.models.transformer.rope_3d import apply_rope
from cogvideox_jax.parallel.logical_axes import constrain, logical_init


class JointAttention(nn.Module):
    heads: int
    head_dim: int
    use_bias: bool = True
    backend: str = "auto"
    sequence_parallel: Optional[str] = None
    mesh: Any = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    matmul_dtype: str = "float32"  # of the q/k/v/out projections: see models/mixed_precision_dot.py

    def _dense(self, features, name, names):
        return nn.Dense(features, use_bias=self.use_bias if name != "to_out" else True, dtype=self.dtype,
                        param_dtype=self.param_dtype, name=name, dot_general=dense_dot_general(self.matmul_dtype),
                        kernel_init=logical_init(nn.initializers.lecun_normal(), names),
                        bias_init=logical_init(nn.initializers.zeros, names[1:]))

    @nn.compact
    def __call__(self, video, text, rope=None):
        """video (B, Sv, D), text (B, St, D) -> (video_out, text_out)."""
        n_text = text.shape[1]
        x = jnp.concatenate([text, video], axis=1)
        b, s, _ = x.shape
        inner = self.heads * self.head_dim
        q, k, v = (self._dense(inner, n, ("embed", "heads"))(x).reshape(b, s, self.heads, self.head_dim)
                   for n in ("to_q", "to_k", "to_v"))
        q = layer_norm("norm_q", 1e-6, self.dtype, self.param_dtype, "kv")(q)
        k = layer_norm("norm_k", 1e-6, self.dtype, self.param_dtype, "kv")(k)
        if rope is not None:
            cos, sin = rope
            q = jnp.concatenate([q[:, :n_text], apply_rope(q[:, n_text:], cos, sin)], axis=1)
            k = jnp.concatenate([k[:, :n_text], apply_rope(k[:, n_text:], cos, sin)], axis=1)
        names = ("activation_batch", "activation_length", "activation_heads", "activation_kv")
        q, k, v = (constrain(t, names) for t in (q, k, v))
        if self.sequence_parallel is not None and self.mesh is not None and self.mesh.shape.get("sequence", 1) > 1:
            from cogvideox_jax.parallel.sequence_parallel_attention import sequence_parallel_attention

            def local(q, k, v, kv_length):  # Ulysses: the fused backend on the gathered sequence
                return dot_product_attention(q, k, v, backend=self.backend, kv_length=kv_length)

            out = sequence_parallel_attention(q, k, v, self.mesh, scheme=self.sequence_parallel,
                                              local_attention=local)
        else:
            out = dot_product_attention(q, k, v, backend=self.backend)
        out = self._dense(x.shape[-1], "to_out", ("heads", "embed"))(out.reshape(b, s, inner))
        return out[:, n_text:], out[:, :n_text]
