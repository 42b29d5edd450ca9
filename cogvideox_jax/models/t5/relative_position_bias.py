"""T5 relative position buckets and the (learned, per-head) relative attention bias.

Buckets are computed in numpy at trace time (the sequence length is static), mirroring the
float32 arithmetic of transformers' ``T5Attention._relative_position_bucket`` so that bucket
boundaries (e.g. distance 16/32/64 of the 32/128 XXL config) land identically.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from cogvideox_jax.parallel.logical_axes import logical_init


def relative_position_bucket(
    relative_position: np.ndarray, bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128
) -> np.ndarray:
    """Map ``memory_position - query_position`` to a bucket in ``[0, num_buckets)`` (int32).

    Half of the buckets (per direction when bidirectional) are exact small distances, the other
    half are logarithmically spaced up to ``max_distance``; farther distances share the last bucket.
    """
    relative_position = np.asarray(relative_position, dtype=np.int64)
    relative_buckets = np.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        relative_buckets += (relative_position > 0).astype(np.int64) * num_buckets
        relative_position = np.abs(relative_position)
    else:
        relative_position = -np.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    # float32 like torch; clamp to 1 only to avoid log(0) where the small branch is taken anyway.
    rel_f = np.maximum(relative_position, 1).astype(np.float32)
    scaled = np.log(rel_f / np.float32(max_exact)) / np.float32(math.log(max_distance / max_exact))
    scaled = (scaled * np.float32(num_buckets - max_exact)).astype(np.float32)
    if_large = max_exact + scaled.astype(np.int64)  # truncation toward zero, like torch .to(long)
    if_large = np.minimum(if_large, num_buckets - 1)
    relative_buckets += np.where(is_small, relative_position, if_large)
    return relative_buckets.astype(np.int32)


def relative_position_buckets_matrix(
    query_length: int, key_length: int, bidirectional: bool, num_buckets: int, max_distance: int
) -> np.ndarray:
    """``(query_length, key_length)`` bucket ids for ``key_pos - query_pos``."""
    context = np.arange(query_length, dtype=np.int64)[:, None]
    memory = np.arange(key_length, dtype=np.int64)[None, :]
    return relative_position_bucket(memory - context, bidirectional, num_buckets, max_distance)


class RelativePositionBias(nn.Module):
    """Learned bias table ``(num_buckets, num_heads)`` -> attention bias ``(1, heads, q_len, k_len)``.

    Param path ``relative_attention_bias/embedding`` matches transformers'
    ``...SelfAttention.relative_attention_bias.weight`` (an ``nn.Embedding``, no transpose).
    """

    num_buckets: int
    max_distance: int
    num_heads: int
    bidirectional: bool = True
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, query_length: int, key_length: int) -> jnp.ndarray:
        table = self.param(
            "embedding",
            logical_init(nn.initializers.normal(stddev=1.0), ("relpos_buckets", "heads")),
            (self.num_buckets, self.num_heads),
            self.param_dtype,
        )
        buckets = relative_position_buckets_matrix(
            query_length, key_length, self.bidirectional, self.num_buckets, self.max_distance
        )
        values = jnp.take(jnp.asarray(table, self.dtype), jnp.asarray(buckets), axis=0)  # (q, k, heads)
        return jnp.transpose(values, (2, 0, 1))[None]
