"""The one attention entry point: ``dot_product_attention(q, k, v, backend=...)``.

Layout ``(B, L, H, D)``; softmax(q k^T / sqrt(D)) v over the whole (joint text + video) sequence,
no mask (CogVideoX's attention is full and bidirectional). Backends:

* ``"xla"``: ``jax.nn.dot_product_attention(implementation="xla")`` - runs everywhere;
* ``"cudnn"``: the fused cuDNN flash-attention kernel (GPU; bf16/fp16 inputs);
* ``"splash"``: Pallas splash attention (TPU). The sequence is padded to the kernel's block size
  and the padding masked with segment ids; q is scaled by 1/sqrt(D) here because the kernel does
  not scale. ``interpret=True`` runs the same kernel on CPU (tests); ``interpret=None`` (default)
  interprets on any non-TPU platform, so ``attention_backend="splash"`` also runs on CPU;
  the platform is the one compiled for (``target_platform``: the ambient mesh's devices', so a
  TPU program compiled ahead of time on a CPU host gets the Mosaic kernel);
* ``"auto"``: splash on TPU, cuDNN on GPU for 16-bit inputs, XLA otherwise; on a CPU host the
  XLA math runs one (batch, head) at a time under ``lax.map`` (``per_head_attention``: plain 2-D
  matmuls + softmax): XLA:CPU runs the head-batched form several times slower (measured 1.5 s vs
  14 s at 48 heads x 1546 tokens) and this holds only one head's L x L scores at a time. An
  explicit ``"xla"`` always lowers the head-batched form (e.g. AOT-compiling for TPU on a CPU host).

Under a multi-device ``jax.set_mesh`` the splash kernel runs per shard inside ``shard_map`` (batch over
data/fsdp, heads over tensor; ``partitioned``), because GSPMD cannot partition Mosaic kernels.

Sequence parallelism (Ulysses / ring) wraps this function: see
``cogvideox_jax/parallel/sequence_parallel_attention.py``.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

BACKENDS = ("auto", "xla", "cudnn", "splash")


def target_platform() -> str:
    """The platform the program is compiled for: the ambient (``jax.set_mesh``) mesh's devices' when a
    mesh is set (e.g. abstract TPU devices when compiling ahead of time on a CPU host: ``cogvideox_jax/tpu_aot.py``),
    else the default backend's."""
    mesh = jax.sharding.get_abstract_mesh()
    device = None if mesh.empty else getattr(mesh, "abstract_device", None)
    return getattr(device, "platform", None) or jax.devices()[0].platform


def resolve_backend(backend: str, dtype) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; choose from {BACKENDS}")
    if backend != "auto":
        return backend
    platform = target_platform()
    if platform == "tpu":
        return "splash"
    if platform == "gpu" and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16):
        return "cudnn"
    return "xla"


def dot_product_attention(q, k, v, *, backend: str = "auto", splash_block: int = 512, interpret=None,
                          kv_length: int | None = None):
    """Full attention of ``(B, L, H, D)`` q/k/v; returns ``(B, L, H, D)``.

    ``kv_length`` (static): only the first ``kv_length`` keys are attended to (the rest is padding,
    e.g. added by sequence parallelism); default all.
    """
    requested, backend = backend, resolve_backend(backend, q.dtype)
    if kv_length is not None and kv_length >= k.shape[1]:
        kv_length = None
    if backend in ("xla", "cudnn"):
        if backend == "xla" and requested == "auto" and target_platform() == "cpu":
            return per_head_attention(q, k, v, kv_length=kv_length)
        lengths = None if kv_length is None else jnp.full((q.shape[0],), kv_length, jnp.int32)
        return jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=lengths, implementation=backend)
    if interpret is None:
        interpret = target_platform() != "tpu"
    body = functools.partial(splash_attention, block=splash_block, interpret=interpret, kv_length=kv_length)
    mesh = _auto_mesh()
    if mesh is None:
        return body(q, k, v)
    return partitioned(body, mesh, q, k, v)


def _auto_mesh():
    """The ambient (``jax.set_mesh``) mesh when it has > 1 device and no manual axes (i.e. we are not
    already inside a ``shard_map``, e.g. Ulysses' local attention), else None."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1:
        return None
    if any(t == jax.sharding.AxisType.Manual for t in mesh.axis_types):
        return None
    return mesh


def partitioned(body, mesh, q, k, v):
    """Run a per-device attention ``body(q, k, v)`` under ``shard_map``: batch over (data, fsdp), heads
    over tensor (the axes that divide them), the whole sequence on each device.

    Mosaic kernels (splash) cannot be partitioned by GSPMD ("Mosaic kernels cannot be automatically
    partitioned"), so a sharded model must call them per shard; attention is independent per
    (batch, head), so this needs no collective.
    """
    from jax.sharding import PartitionSpec as P

    def axes(names, size):
        kept, prod = [], 1
        for ax in names:
            n = mesh.shape.get(ax, 1)
            if n > 1 and size % (prod * n) == 0:
                kept.append(ax)
                prod *= n
        return tuple(kept) if kept else None

    spec = P(axes(("data", "fsdp"), q.shape[0]), None, axes(("tensor",), q.shape[2]), None)
    return jax.shard_map(body, mesh=mesh, in_specs=(spec, spec, spec), out_specs=spec, check_vma=False)(q, k, v)


def per_head_attention(q, k, v, kv_length: int | None = None):
    """softmax(q k^T / sqrt(D)) v of ``(B, L, H, D)`` inputs, one (batch, head) pair at a time."""
    b, length, h, d = q.shape
    to_heads = lambda x: jnp.swapaxes(x, 1, 2).reshape(b * h, x.shape[1], d)  # noqa: E731
    scale = jnp.asarray(1.0 / math.sqrt(d), q.dtype)

    def one_head(qkv):
        qh, kh, vh = qkv
        scores = jnp.dot(qh * scale, kh.T, preferred_element_type=jnp.float32)
        if kv_length is not None:
            scores = jnp.where(jnp.arange(scores.shape[-1]) < kv_length, scores, -jnp.inf)
        probs = jax.nn.softmax(scores, axis=-1).astype(vh.dtype)
        return jnp.dot(probs, vh, preferred_element_type=jnp.float32).astype(q.dtype)

    out = jax.lax.map(one_head, (to_heads(q), to_heads(k), to_heads(v)))
    return jnp.swapaxes(out.reshape(b, h, length, d), 1, 2)


def splash_attention(q, k, v, *, block: int = 512, interpret: bool = False, kv_length: int | None = None):
    """Pallas splash attention over ``(B, L, H, D)``; pads L to a multiple of the block size."""
    from jax.experimental.pallas.ops.tpu import splash_attention as sa

    b, length, h, d = q.shape
    block = min(block, _round_up(length, 128))
    padded = _round_up(length, block)
    pad = padded - length
    q = q * jnp.asarray(1.0 / math.sqrt(d), q.dtype)
    to_hld = lambda x: jnp.pad(jnp.swapaxes(x, 1, 2), ((0, 0), (0, 0), (0, pad), (0, 0)))  # noqa: E731
    qh, kh, vh = to_hld(q), to_hld(k), to_hld(v)
    sizes = sa.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                          block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block, block_kv_dq=block)
    mask = sa.MultiHeadMask([sa.FullMask((padded, padded)) for _ in range(h)])
    kernel = sa.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret)
    seg_q = (jnp.arange(padded) < length).astype(jnp.int32)
    seg_kv = (jnp.arange(padded) < (length if kv_length is None else kv_length)).astype(jnp.int32)
    segment_ids = sa.SegmentIds(q=seg_q, kv=seg_kv)
    out = jax.vmap(functools.partial(kernel, segment_ids=segment_ids))(qh, kh, vh)
    return jnp.swapaxes(out[:, :, :length], 1, 2)


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m
