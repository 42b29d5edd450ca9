"""Aligned host buffers: layouts, dtypes, and XLA:CPU adopting them without a copy."""
from __future__ import annotations

import jax
import ml_dtypes
import numpy as np
import pytest

from cogvideox_jax.convert.host_arrays import aligned_copy, aligned_empty, as_aligned


@pytest.mark.parametrize("shape,perm", [((300, 517), (1, 0)), ((7, 5, 3, 3, 3), (2, 3, 4, 1, 0)),
                                        ((130, 260, 3, 3), (2, 3, 1, 0)), ((5,), (0,)), ((), ())])
@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16])
def test_aligned_copy_of_transposed_views(shape, perm, dtype):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32).transpose(perm)
    y = aligned_copy(x, dtype)
    assert y.flags.c_contiguous and y.ctypes.data % 64 == 0 and y.dtype == dtype and y.shape == x.shape
    np.testing.assert_array_equal(y, x.astype(dtype))


def test_as_aligned_keeps_aligned_arrays_and_xla_uses_them_in_place():
    a = aligned_empty((64, 33), np.float32)
    a[...] = 1.0
    assert as_aligned(a) is a and as_aligned(a, np.float32) is a
    assert as_aligned(a, ml_dtypes.bfloat16) is not a
    unaligned = np.ones(4 * 33 + 1, np.float32)[1:].reshape(4, 33)
    assert unaligned.ctypes.data % 64 != 0 and as_aligned(unaligned).ctypes.data % 64 == 0
    if jax.devices()[0].platform == "cpu":
        assert jax.device_put(a).unsafe_buffer_pointer() == a.ctypes.data
