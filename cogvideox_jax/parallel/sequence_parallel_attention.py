"""Sequence-parallel joint (text + video) attention with explicit collectives (``jax.shard_map``).

The sequence axis of q/k/v ``(B, L, H, D)`` is split over the mesh axis ``sequence``. Text tokens
are simply the first ``L_text`` positions of the joint sequence, so both schemes treat them like any
other token. A length that the sequence degree does not divide is padded at the end and the padded
keys are masked out (their outputs are dropped).

* **Ulysses**: an all-to-all turns "sequence-sharded, all heads" into "all of the sequence, heads
  sharded", runs ordinary attention locally, and turns it back. Needs heads % degree == 0.
* **Ring**: each device keeps its query block; key/value blocks travel around the ring with
  ``ppermute`` and are merged with an online (flash-style) softmax in float32.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

SEQUENCE_AXIS = "sequence"
BATCH_AXES = ("data", "fsdp")
HEAD_AXIS = "tensor"


def _dividing_axes(mesh: Mesh, axes, size: int):
    kept, prod = [], 1
    for ax in axes:
        n = mesh.shape.get(ax, 1)
        if n > 1 and size % (prod * n) == 0:
            kept.append(ax)
            prod *= n
    return tuple(kept) if kept else None


def _local_attention(q, k, v, kv_length: int):
    """Reference softmax attention in float32 over the first ``kv_length`` keys (materialises the scores;
    the model passes its fused backend instead). q (B,Lq,H,D), k/v (B,Lk,H,D)."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    s = jnp.einsum("bqhd,bkhd->bhqk", q.astype(jnp.float32) * scale, k.astype(jnp.float32))
    s = jnp.where((jnp.arange(k.shape[1]) < kv_length)[None, None, None, :], s, -jnp.inf)
    p = jax.nn.softmax(s, axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", p, v.astype(jnp.float32)).astype(q.dtype)


def _pad_sequence(x, multiple: int):
    pad = (-x.shape[1]) % multiple
    if pad:
        x = jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0)))
    return x


def sequence_parallel_attention(q, k, v, mesh: Mesh, *, scheme: str = "ulysses", local_attention=None):
    """Attention over the full joint sequence with q/k/v sequence-sharded on ``mesh``.

    Args:
      q, k, v: ``(B, L, H, D)`` (global arrays; any sharding - they are resharded as needed).
      scheme: ``"ulysses"`` or ``"ring"``.
      local_attention: ``f(q, k, v, kv_length) -> out`` used by Ulysses for the local attention over the
        whole (padded) sequence, attending to the first ``kv_length`` keys (a static int). Default: a
        float32 reference that materialises the scores; the model passes its fused backend.
    """
    degree = mesh.shape.get(SEQUENCE_AXIS, 1)
    batch, length, heads, _ = q.shape
    head_axes = _dividing_axes(mesh, (HEAD_AXIS,), heads)
    local_heads = heads // (mesh.shape[HEAD_AXIS] if head_axes else 1)
    if scheme == "ulysses" and local_heads % degree:
        raise ValueError(
            f"Ulysses sequence parallelism needs the heads per tensor shard ({local_heads}) to be divisible "
            f"by the sequence degree ({degree}); use scheme='ring' or a sequence degree dividing {local_heads}"
        )
    if scheme not in ("ulysses", "ring"):
        raise ValueError(f"unknown sequence-parallel scheme {scheme!r}; use 'ulysses' or 'ring'")
    q, k, v = (_pad_sequence(x, degree) for x in (q, k, v))
    padded = q.shape[1]
    block = padded // degree
    spec = P(_dividing_axes(mesh, BATCH_AXES, batch), SEQUENCE_AXIS, head_axes, None)
    local_attention = local_attention or _local_attention

    if scheme == "ulysses":
        def body(ql, kl, vl):
            # (B, L/n, H, D) -> (B, L, H/n, D): split heads across the ring, gather sequence
            a2a = functools.partial(jax.lax.all_to_all, axis_name=SEQUENCE_AXIS, split_axis=2, concat_axis=1,
                                    tiled=True)
            qg, kg, vg = a2a(ql), a2a(kl), a2a(vl)
            out = local_attention(qg, kg, vg, length)
            return jax.lax.all_to_all(out, SEQUENCE_AXIS, split_axis=1, concat_axis=2, tiled=True)
    else:
        def body(ql, kl, vl):
            idx = jax.lax.axis_index(SEQUENCE_AXIS)
            scale = 1.0 / math.sqrt(ql.shape[-1])
            qf = ql.astype(jnp.float32) * scale
            b, lq, h, d = ql.shape
            m = jnp.full((b, h, lq), -jnp.inf, jnp.float32)
            l = jnp.zeros((b, h, lq), jnp.float32)
            o = jnp.zeros((b, lq, h, d), jnp.float32)
            perm = [(j, (j + 1) % degree) for j in range(degree)]

            def step(carry, s):
                m, l, o, kb, vb = carry
                src = (idx - s) % degree  # which block we hold at step s
                valid = (src * block + jnp.arange(block)) < length
                scores = jnp.einsum("bqhd,bkhd->bhqk", qf, kb.astype(jnp.float32))
                scores = jnp.where(valid[None, None, None, :], scores, -jnp.inf)
                m_new = jnp.maximum(m, scores.max(-1))
                m_safe = jnp.where(jnp.isfinite(m_new), m_new, 0.0)
                p = jnp.exp(scores - m_safe[..., None])
                corr = jnp.exp(jnp.where(jnp.isfinite(m), m - m_safe, -jnp.inf))
                l = l * corr + p.sum(-1)
                o = o * jnp.transpose(corr, (0, 2, 1))[..., None] + jnp.einsum("bhqk,bkhd->bqhd", p,
                                                                                vb.astype(jnp.float32))
                kb = jax.lax.ppermute(kb, SEQUENCE_AXIS, perm)
                vb = jax.lax.ppermute(vb, SEQUENCE_AXIS, perm)
                return (m_new, l, o, kb, vb), None

            (m, l, o, _, _), _ = jax.lax.scan(step, (m, l, o, kl, vl), jnp.arange(degree))
            return (o / jnp.transpose(l, (0, 2, 1))[..., None]).astype(ql.dtype)

    out = jax.shard_map(body, mesh=mesh, in_specs=(spec, spec, spec), out_specs=spec, check_vma=False)(q, k, v)
    return out[:, :length]
