"""T5 v1.1 encoder (transformers ``T5EncoderModel``) as Flax Linen.

Param tree (mirrors the transformers names):
  shared/embedding                                     (vocab, embed)    <- shared.weight
  encoder/relative_attention_bias/embedding            (buckets, heads)  <- encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight
  encoder/block_{i}/layer_0/layer_norm/scale
  encoder/block_{i}/layer_0/SelfAttention/{q,k,v}/kernel (embed, heads, kv)
  encoder/block_{i}/layer_0/SelfAttention/o/kernel       (heads, kv, embed)
  encoder/block_{i}/layer_1/layer_norm/scale
  encoder/block_{i}/layer_1/DenseReluDense/{wi_0,wi_1,wo}/kernel   (or wi/wo when not gated)
  encoder/final_layer_norm/scale

The relative position bias is computed once (only block 0 owns a table in T5) and shared by all
layers. Dropout is not implemented (inference / frozen encoder). Output: ``(B, L, d_model)`` in
``dtype`` (the final norm output, like ``last_hidden_state``).
"""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from configs.t5 import T5Config
from cogvideox_jax.models.t5.relative_position_bias import RelativePositionBias
from cogvideox_jax.models.t5.t5_layers import T5FeedForward, T5LayerNorm, T5SelfAttention
from cogvideox_jax.parallel.logical_axes import constrain, logical_init

_RESIDUAL = ("activation_batch", "activation_length", "activation_embed")


class T5LayerSelfAttention(nn.Module):
    config: T5Config
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden, position_bias, attention_mask=None):
        cfg = self.config
        normed = T5LayerNorm(cfg.layer_norm_epsilon, self.dtype, self.param_dtype, name="layer_norm")(hidden)
        out = T5SelfAttention(cfg.num_heads, cfg.d_kv, self.dtype, self.param_dtype, name="SelfAttention")(
            normed, position_bias, attention_mask
        )
        return hidden + out.astype(hidden.dtype)


class T5LayerFF(nn.Module):
    config: T5Config
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden):
        cfg = self.config
        normed = T5LayerNorm(cfg.layer_norm_epsilon, self.dtype, self.param_dtype, name="layer_norm")(hidden)
        out = T5FeedForward(
            cfg.d_ff, cfg.dense_act_fn, cfg.is_gated_act, self.dtype, self.param_dtype, name="DenseReluDense"
        )(normed)
        return hidden + out.astype(hidden.dtype)


class T5Block(nn.Module):
    config: T5Config
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden, position_bias, attention_mask=None):
        hidden = T5LayerSelfAttention(self.config, self.dtype, self.param_dtype, name="layer_0")(
            hidden, position_bias, attention_mask
        )
        hidden = T5LayerFF(self.config, self.dtype, self.param_dtype, name="layer_1")(hidden)
        return constrain(hidden, _RESIDUAL)


class T5Stack(nn.Module):
    """Encoder stack over embedded tokens; the residual stream is float32."""

    config: T5Config
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden, attention_mask=None):
        cfg = self.config
        length = hidden.shape[1]
        position_bias = RelativePositionBias(
            cfg.relative_attention_num_buckets,
            cfg.relative_attention_max_distance,
            cfg.num_heads,
            bidirectional=True,
            dtype=jnp.float32,
            param_dtype=self.param_dtype,
            name="relative_attention_bias",
        )(length, length)
        hidden = constrain(hidden.astype(jnp.float32), _RESIDUAL)
        for i in range(cfg.num_layers):
            hidden = T5Block(cfg, self.dtype, self.param_dtype, name=f"block_{i}")(hidden, position_bias, attention_mask)
        return T5LayerNorm(cfg.layer_norm_epsilon, self.dtype, self.param_dtype, name="final_layer_norm")(hidden)


class T5EncoderModel(nn.Module):
    """``input_ids (B, L) int`` [, ``attention_mask (B, L)``] -> ``(B, L, d_model)`` in ``dtype``.

    ``attention_mask=None`` attends to every token including padding (the CogVideoX pipelines).
    """

    config: T5Config
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, input_ids: jnp.ndarray, attention_mask: Optional[jnp.ndarray] = None) -> jnp.ndarray:
        cfg = self.config
        embed = nn.Embed(
            cfg.vocab_size,
            cfg.d_model,
            dtype=jnp.float32,  # exact upcast of the stored table; the residual stream is float32
            param_dtype=self.param_dtype,
            embedding_init=logical_init(nn.initializers.normal(stddev=1.0), ("vocab", "embed")),
            name="shared",
        )
        hidden = embed(jnp.asarray(input_ids, jnp.int32))
        return T5Stack(cfg, self.dtype, self.param_dtype, name="encoder")(hidden, attention_mask)
