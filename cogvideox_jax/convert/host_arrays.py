"""Host (numpy) buffers that XLA can adopt without copying.

XLA:CPU takes a numpy array as a device buffer without a copy (``jax.device_put``, or a jitted
call's numpy argument) only when its data is 64-byte aligned; numpy's own allocations are 16-byte
aligned, so an ordinary array is copied — for a checkpoint's params, a second full copy of the
weights on every call that receives them. Converters therefore write each converted weight once,
in its final layout and dtype, into an aligned buffer.
"""
from __future__ import annotations

import numpy as np

XLA_CPU_ALIGNMENT = 64
_TILE = 128


def aligned_empty(shape, dtype, alignment: int = XLA_CPU_ALIGNMENT) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an ``alignment``-byte boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + alignment, np.uint8)
    start = (-raw.ctypes.data) % alignment
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def copy_into(out: np.ndarray, x) -> np.ndarray:
    """``out[...] = x`` (cast as needed); a transposed view (Linear / conv kernels from PyTorch
    layouts) is copied in tiles of its last two axes, ~2x faster than one strided copy, which
    misses the cache on every element."""
    x = np.asarray(x)
    if x.ndim < 2 or x.flags.c_contiguous:
        np.copyto(out, x, casting="unsafe")
        return out
    rows, cols = x.shape[-2:]
    for i in range(0, rows, _TILE):
        for j in range(0, cols, _TILE):
            np.copyto(out[..., i:i + _TILE, j:j + _TILE], x[..., i:i + _TILE, j:j + _TILE], casting="unsafe")
    return out


def aligned_copy(x, dtype=None) -> np.ndarray:
    """``x`` (any layout, e.g. a transposed view) copied into an aligned C-contiguous array of ``dtype``."""
    x = np.asarray(x)
    return copy_into(aligned_empty(x.shape, x.dtype if dtype is None else dtype), x)


def as_aligned(x, dtype=None) -> np.ndarray:
    """``x`` itself when it already is an aligned C-contiguous array of ``dtype``, else ``aligned_copy``."""
    if (isinstance(x, np.ndarray) and x.flags.c_contiguous and x.ctypes.data % XLA_CPU_ALIGNMENT == 0
            and (dtype is None or x.dtype == np.dtype(dtype))):
        return x
    return aligned_copy(x, dtype)
