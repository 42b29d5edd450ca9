"""T5 v1.1 building blocks: RMS norm, (gated) feed-forward, unscaled self-attention.

Names mirror transformers' ``modeling_t5`` so that the converter is mechanical
(``layer_norm.weight`` -> ``layer_norm/scale``, ``q.weight`` -> ``q/kernel`` ...).

Precision policy (``dtype`` = compute dtype, ``param_dtype`` = storage dtype):
  * norms accumulate the variance in float32 (as ``T5LayerNorm``) and return ``dtype``;
  * attention logits, position bias and softmax are float32; the projections run in ``dtype``;
  * the FF output projection ``wo`` runs in float32 and the residual stream stays float32 - this
    mirrors transformers' ``_keep_in_fp32_modules = ["wo"]`` (T5 activations overflow in half
    precision) and keeps the bf16 path close to fp32.
"""
from __future__ import annotations

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from cogvideox_jax.parallel.logical_axes import constrain, logical_init

_DEFAULT_KERNEL_INIT = nn.initializers.normal(stddev=0.05)


def gelu_new(x: jnp.ndarray) -> jnp.ndarray:
    """transformers ``gelu_new``: the tanh approximation of GELU."""
    return 0.5 * x * (1.0 + jnp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * jnp.power(x, 3.0))))


ACTIVATIONS = {
    "gelu_new": gelu_new,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
}


class T5LayerNorm(nn.Module):
    """RMS norm without mean subtraction or bias; variance in float32."""

    eps: float = 1e-6
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        scale = self.param("scale", logical_init(nn.initializers.ones, ("norm",)), (x.shape[-1],), self.param_dtype)
        x32 = x.astype(jnp.float32)
        variance = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        y = (x32 * jax.lax.rsqrt(variance + self.eps)).astype(self.dtype)
        return jnp.asarray(scale, self.dtype) * y


class T5FeedForward(nn.Module):
    """``T5DenseGatedActDense`` (wi_0, wi_1, wo) or ``T5DenseActDense`` (wi, wo); no biases.

    Returns float32 (``wo`` computed in float32, see module docstring).
    """

    d_ff: int
    activation: str = "gelu_new"
    gated: bool = True
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    def _dense(self, features, names, name, dtype):
        return nn.Dense(
            features,
            use_bias=False,
            dtype=dtype,
            param_dtype=self.param_dtype,
            kernel_init=logical_init(_DEFAULT_KERNEL_INIT, names),
            name=name,
        )

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        d_model = x.shape[-1]
        act = ACTIVATIONS[self.activation]
        if self.gated:
            h = act(self._dense(self.d_ff, ("embed", "mlp"), "wi_0", self.dtype)(x))
            h = h * self._dense(self.d_ff, ("embed", "mlp"), "wi_1", self.dtype)(x)
        else:
            h = act(self._dense(self.d_ff, ("embed", "mlp"), "wi", self.dtype)(x))
        h = constrain(h, ("activation_batch", "activation_length", "activation_mlp"))
        return self._dense(d_model, ("mlp", "embed"), "wo", jnp.float32)(h.astype(jnp.float32))


class T5SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention without the 1/sqrt(d) scaling (T5 quirk).

    ``position_bias``: ``(1, heads, L, L)`` float32, computed once by the first layer and shared.
    ``attention_mask``: optional ``(B, L)`` (1 = attend, 0 = padding key); ``None`` attends to all
    tokens, as the CogVideoX pipeline does.
    Kernels: q/k/v ``(embed, heads, kv)``, o ``(heads, kv, embed)``.
    """

    num_heads: int
    d_kv: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, position_bias, attention_mask: Optional[jnp.ndarray] = None):
        d_model = x.shape[-1]

        def proj(name):
            return nn.DenseGeneral(
                (self.num_heads, self.d_kv),
                use_bias=False,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                kernel_init=logical_init(_DEFAULT_KERNEL_INIT, ("embed", "heads", "kv")),
                name=name,
            )(x)

        q, k, v = proj("q"), proj("k"), proj("v")  # (B, L, H, D)
        q = constrain(q, ("activation_batch", "activation_length", "activation_heads", "activation_kv"))
        k = constrain(k, ("activation_batch", "activation_length", "activation_heads", "activation_kv"))
        v = constrain(v, ("activation_batch", "activation_length", "activation_heads", "activation_kv"))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
        scores = scores + position_bias.astype(jnp.float32)
        if attention_mask is not None:
            keep = jnp.asarray(attention_mask).astype(bool)[:, None, None, :]
            scores = jnp.where(keep, scores, jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
        out = constrain(out, ("activation_batch", "activation_length", "activation_heads", "activation_kv"))
        return nn.DenseGeneral(
            d_model,
            axis=(-2, -1),
            use_bias=False,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=logical_init(_DEFAULT_KERNEL_INIT, ("heads", "kv", "embed")),
            name="o",
        )(out)
