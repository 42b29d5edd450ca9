"""One CogVideoX expert transformer block (``CogVideoXBlock``)."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from configs.transformer import TransformerConfig
from cogvideox_jax.models.transformer.expert_adaln import ExpertAdaLayerNormZero
from cogvideox_jax.models.transformer.feed_forward import FeedForward
from cogvideox_jax.models.transformer.joint_attention import JointAttention
from cogvideox_jax.parallel.logical_axes import constrain

_ACT = ("activation_batch", "activation_length", "activation_embed")


class TransformerBlock(nn.Module):
    config: TransformerConfig
    mesh: Any = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, carry, temb, rope):
        video, text = carry
        cfg = self.config
        d = cfg.inner_dim
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        n_video, n_text, gate, t_gate = ExpertAdaLayerNormZero(d, cfg.norm_eps, name="norm1", **kw)(video, text, temb)
        attn_v, attn_t = JointAttention(cfg.num_attention_heads, cfg.attention_head_dim, cfg.attention_bias,
                                        cfg.attention_backend, cfg.sequence_parallel, self.mesh, name="attn1",
                                        matmul_dtype=cfg.matmul_dtype, **kw)(n_video, n_text, rope)
        video = video + gate * attn_v
        text = text + t_gate * attn_t
        n_video, n_text, gate, t_gate = ExpertAdaLayerNormZero(d, cfg.norm_eps, name="norm2", **kw)(video, text, temb)
        n_text_len = text.shape[1]
        ff = FeedForward(d, name="ff", matmul_dtype=cfg.matmul_dtype, **kw)(
            jnp.concatenate([n_text, n_video], axis=1))
        video = constrain(video + gate * ff[:, n_text_len:], _ACT)
        text = constrain(text + t_gate * ff[:, :n_text_len], _ACT)
        return (video, text), None
