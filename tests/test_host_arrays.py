"""Loader memory: aligned host buffers (layouts, dtypes, XLA:CPU adopting them without a copy) and the lazy safetensors mapping."""
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


def test_safetensors_mapping_reads_a_tensor_only_when_indexed(tmp_path, monkeypatch):
    from safetensors.numpy import save_file

    from cogvideox_jax.convert.safetensors_io import SafetensorsTensors, read_safetensors

    path = str(tmp_path / "w.safetensors")
    save_file({"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "b.bias": np.ones(2, np.float32)}, path)
    tensors = read_safetensors(path)
    reads = []
    real_open = SafetensorsTensors._open
    monkeypatch.setattr(SafetensorsTensors, "_open", staticmethod(lambda p, read: reads.append(p) or real_open(p, read)))
    assert "a.weight" in tensors and "c" not in tensors and set(tensors.only(["b."])) == {"b.bias"}
    assert reads == []
    np.testing.assert_array_equal(tensors["a.weight"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert reads == [path]
