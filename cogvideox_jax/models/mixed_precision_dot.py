"""Matmuls with low-precision operands and fp32 accumulation, in the forward *and* the backward pass.

``dense_dot_general("bfloat16")`` is a ``dot_general`` for ``flax.linen.Dense``: the activations and
the kernel are rounded to bf16, multiplied with fp32 accumulation and an fp32 result
(``preferred_element_type=float32``); params, optimizer state and every elementwise op stay in the
module's dtype. The backward pass is written out (``jax.custom_vjp``) so that its two matmuls — the
input gradient ``g @ W^T`` and the kernel gradient ``x^T @ g`` — also take bf16 operands with fp32
results. Left to autodiff, they would be an fp32 x bf16 dot, which XLA computes in fp32.

Why: XLA:CPU compiles a bf16 x bf16 -> fp32 dot to a YNNPACK kernel that uses the AMX / AVX512-BF16
units where the CPU has them (~3x the fp32 rate on the shapes transformer's matmuls: BENCHMARKS.md),
while a bf16 -> bf16 dot is computed as convert -> fp32 dot -> convert and gains nothing; on GPU and
TPU the same dot runs on the tensor cores / MXU. This is the usual mixed-precision recipe: rounding
errors of ~2^-9 relative per operand, no loss of range. On a CPU without bf16 units it has not been
measured (it may well be slower than fp32). It is an option (``TransformerConfig.matmul_dtype``),
off by default (the ``shapes`` preset turns it on), and the parity tests and converted checkpoints
use fp32.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
from jax import lax

from configs.transformer import MATMUL_DTYPES


def _is_dense_dims(lhs, rhs, dims) -> bool:
    """``dims`` contract the last axis of ``lhs`` with the first of a 2-D ``rhs``, no batch axes
    (what ``nn.Dense`` passes)."""
    (lc, rc), (lb, rb) = dims
    return rhs.ndim == 2 and tuple(lc) == (lhs.ndim - 1,) and tuple(rc) == (0,) and not lb and not rb


@functools.lru_cache(maxsize=None)
def _low_precision_dense_dot(operand_dtype, x_dtype, w_dtype) -> Callable:
    """``x @ w`` (x: (..., K), w: (K, N)) with ``operand_dtype`` operands and an fp32 result; its
    gradients come back in ``x_dtype`` / ``w_dtype``."""
    def matmul(a, b, dims):
        return lax.dot_general(a, b, (dims, ((), ())), preferred_element_type=jnp.float32)

    def fwd(x, w):
        xl, wl = x.astype(operand_dtype), w.astype(operand_dtype)
        return matmul(xl, wl, ((x.ndim - 1,), (0,))), (xl, wl)

    @jax.custom_vjp
    def dot(x, w):
        return fwd(x, w)[0]

    def bwd(res, g):
        xl, wl = res
        gl = g.astype(operand_dtype)
        dx = matmul(gl, wl, ((g.ndim - 1,), (1,)))
        lead = tuple(range(g.ndim - 1))  # every axis but the features: summed over for the kernel
        dw = matmul(xl, gl, (lead, lead))
        return dx.astype(x_dtype), dw.astype(w_dtype)

    dot.defvjp(fwd, bwd)
    return dot


def dense_dot_general(matmul_dtype: str) -> Optional[Callable]:
    """The ``dot_general`` to give ``nn.Dense`` for ``matmul_dtype`` (``None``: Flax's default,
    ``lax.dot_general`` in the module's dtype)."""
    if matmul_dtype not in MATMUL_DTYPES:
        raise ValueError(f"matmul_dtype {matmul_dtype!r}: choose from {MATMUL_DTYPES}")
    if matmul_dtype == "float32":
        return None
    operand_dtype = jnp.dtype(matmul_dtype)

    def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
        if not _is_dense_dims(lhs, rhs, dimension_numbers):
            return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                                   preferred_element_type=preferred_element_type)
        out = _low_precision_dense_dot(operand_dtype, jnp.dtype(lhs.dtype), jnp.dtype(rhs.dtype))(lhs, rhs)
        return out if preferred_element_type is None else out.astype(preferred_element_type)

    return dot_general
