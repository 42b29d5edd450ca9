"""Frame-batched causal encode/decode: chunks of frames with the conv cache threaded between them.

``"diffusers"`` reproduces ``AutoencoderKLCogVideoX._encode/_decode``: with chunk size ``n``,
``num_batches = max(T // n, 1)``, the first chunk takes ``n + T % n`` frames (all of them when
``T < 2n``) and every later chunk ``n`` frames; GroupNorm statistics are per chunk.
``"whole"`` runs the clip in one pass (GroupNorm over the whole clip, the SAT behaviour).

The first chunk runs on its own; the equal chunks after it run under one ``nn.scan`` that carries
the conv-cache pytree, so the chunk loop is traced and compiled once per shape.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax.numpy as jnp

FRAME_BATCHING_MODES = ("diffusers", "whole")


def chunk_plan(num_frames: int, chunk: int) -> tuple[int, int]:
    """``(first_chunk_frames, number_of_later_chunks)`` of diffusers' frame batching."""
    if chunk <= 0:
        raise ValueError(f"chunk size must be positive, got {chunk}")
    num_batches = max(num_frames // chunk, 1)
    first = min(num_frames, chunk + num_frames % chunk)
    return first, num_batches - 1


def _scan_body(module, cache, x_chunk):
    y, cache = module(x_chunk, cache)
    return cache, y


def run_frame_batched(module: Callable, x, *, mode: str, chunk: int):
    """Apply causal ``module(x, cache) -> (y, cache)`` over time axis 1 of ``x`` chunk by chunk."""
    if mode not in FRAME_BATCHING_MODES:
        raise ValueError(f"frame_batching must be one of {FRAME_BATCHING_MODES}, got {mode!r}")
    if mode == "whole":
        return module(x, None)[0]
    b, t = x.shape[:2]
    first, n_rest = chunk_plan(t, chunk)
    y0, cache = module(x[:, :first], None)
    if n_rest == 0:
        return y0
    rest = x[:, first:].reshape(b, n_rest, chunk, *x.shape[2:]).swapaxes(0, 1)
    scan = nn.scan(
        _scan_body,
        variable_broadcast="params",
        split_rngs={"params": False},
        in_axes=0,
        out_axes=0,
    )
    _, ys = scan(module, cache, rest)  # ys: (n_rest, B, t', ...)
    ys = ys.swapaxes(0, 1).reshape(b, -1, *ys.shape[3:])
    return jnp.concatenate([y0, ys.astype(y0.dtype)], axis=1)
