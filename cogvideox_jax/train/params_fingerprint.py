"""A content hash of a param tree that does not depend on how it is sharded.

A LoRA run's checkpoints leave out the frozen base model; they record this fingerprint of it, and a
resume refuses a base whose fingerprint differs. It is computed where the params live (on the mesh,
one jitted pass, every process holding only its shards): per leaf, two 32-bit sums over its elements
of a mixing hash of (element index, element bits). Sums commute, so the result is the same on any
mesh and process layout; the leaves' sums, paths, shapes and dtypes are then hashed with SHA-256.
"""
from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

_SEEDS = (0x9E3779B1, 0x85EBCA77)


def _fmix32(h):
    """MurmurHash3's 32-bit finaliser (uint32 in, uint32 out)."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _bits(x):
    if x.dtype.itemsize == 4:
        return jax.lax.bitcast_convert_type(x, jnp.uint32)
    if x.dtype.itemsize == 2:
        return jax.lax.bitcast_convert_type(x, jnp.uint16).astype(jnp.uint32)
    if x.dtype.itemsize == 1:
        return jax.lax.bitcast_convert_type(x, jnp.uint8).astype(jnp.uint32)
    raise TypeError(f"no fingerprint for dtype {x.dtype}")


def _leaf_sums(x):
    """(2,) uint32: the element hashes' sums, with the flat (row-major) index as each element's index."""
    x = jnp.asarray(x)
    index = jnp.zeros(x.shape, jnp.uint32)
    stride = 1
    for d in range(x.ndim - 1, -1, -1):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, x.shape, d) * jnp.uint32(stride & 0xFFFFFFFF)
        stride *= x.shape[d]
    bits = _bits(x)
    return jnp.stack([jnp.sum(_fmix32(index * jnp.uint32(s) ^ _fmix32(bits + jnp.uint32(s))), dtype=jnp.uint32)
                      for s in _SEEDS])


@jax.jit
def _tree_sums(leaves):
    return [_leaf_sums(x) for x in leaves]


def params_fingerprint(params) -> str:
    """Hex SHA-256 (16 bytes) of ``params`` (numpy or jax arrays, sharded over any mesh or processes)."""
    flat = traverse_util.flatten_dict(params, sep="/") if isinstance(params, dict) else {"": params}
    names = sorted(flat)
    leaves = [flat[k] for k in names]
    if not leaves:
        return hashlib.sha256(b"empty").hexdigest()[:32]
    sums = _tree_sums(leaves)
    digest = hashlib.sha256()
    for name, leaf, s in zip(names, leaves, sums):
        s = np.asarray(s.addressable_shards[0].data if isinstance(s, jax.Array) else s)
        digest.update(f"{name}|{tuple(leaf.shape)}|{np.dtype(leaf.dtype).name}|{s[0]}|{s[1]};".encode())
    return digest.hexdigest()[:32]
