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


class HeadsDense(nn.Module):
    """``nn.DenseGeneral`` without bias (same params, init values and ``dot_general``), its kernel
    created at its final rank with logical ``names``. DenseGeneral initialises a flat 2-D kernel and
    reshapes it, which under a mesh and the logical rules (training: params are checked against
    their init's shape) constrains the 2-D value with the kernel's 3 names and fails."""

    features: tuple[int, ...]
    axis: tuple[int, ...]           # contracted input axes (negative)
    names: tuple[str, ...]
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        axis = tuple(a % x.ndim for a in self.axis)
        shape = tuple(x.shape[a] for a in axis) + tuple(self.features)
        n_in = len(axis)

        def init(key, shape, dtype=jnp.float32):  # DenseGeneral's: the flat (in, out) draw, reshaped
            flat = (math.prod(shape[:n_in]), math.prod(shape[n_in:]))
            return jnp.reshape(_DEFAULT_KERNEL_INIT(key, flat, dtype), shape)

        kernel = self.param("kernel", logical_init(init, self.names), shape, self.param_dtype)
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
        return jax.lax.dot_general(x, kernel, ((axis, tuple(range(n_in))), ((), ())))


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
            return HeadsDense((self.num_heads, self.d_kv), (-1,), ("embed", "heads", "kv"), self.dtype,
                              self.param_dtype, name=name)(x)

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
        return HeadsDense((d_model,), (-2, -1), ("heads", "kv", "embed"), self.dtype, self.param_dtype,
                          name="o")(out)
