"""Strict matching of converted weights against the params a model expects.

Converters build a flat ``{path_tuple: array}`` from the PyTorch names, then call
``assemble_params`` with the abstract params (``jax.eval_shape(module.init, ...)``) so that a
missing key, an unexpected key or a shape mismatch is an error naming them all - never a
silent partial load.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np
from flax import traverse_util

from cogvideox_jax.errors import WeightMismatchError
from cogvideox_jax.convert.host_arrays import as_aligned


def abstract_params(module, *init_args, **init_kwargs) -> dict:
    """Shapes/dtypes of ``module``'s params (unboxed from logical-partitioning metadata)."""
    import flax.linen as nn

    variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), *init_args, **init_kwargs)
    return nn.unbox(variables["params"])


def assemble_params(
    converted: Mapping[tuple[str, ...], np.ndarray],
    expected: Mapping[str, Any],
    *,
    unused_source_keys=(),
    context: str = "",
    dtype=None,
) -> dict:
    """Build a nested params dict from ``converted`` checked against ``expected``.

    Args:
      converted: flat ``{path_tuple: array}`` produced by a name/layout mapping.
      expected: the nested abstract params of the module (ShapeDtypeStructs or arrays).
      unused_source_keys: source (PyTorch) names that no mapping rule consumed; reported as
        unexpected keys.
      dtype: cast every array to this dtype (default: keep the expected dtype).

    Each weight ends up in a 64-byte-aligned host buffer in its final layout and dtype
    (``host_arrays``: XLA:CPU adopts those without a copy), copied there unless it already is
    one. A ``converted`` dict is emptied as it is copied, so that each source tensor can be freed
    as soon as its weight is built (peak: the checkpoint plus one weight, not two copies of it).
    """
    flat_expected = traverse_util.flatten_dict(expected)
    missing = ["/".join(k) for k in flat_expected if k not in converted]
    unexpected = list(unused_source_keys) + ["/".join(k) for k in converted if k not in flat_expected]
    mismatched = [
        f"{'/'.join(k)}: {tuple(np.shape(converted[k]))} vs {tuple(v.shape)}"
        for k, v in flat_expected.items()
        if k in converted and tuple(np.shape(converted[k])) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        raise WeightMismatchError(missing, unexpected, mismatched, context=context)
    take = converted.pop if isinstance(converted, dict) else converted.__getitem__
    out = {}
    for k, v in flat_expected.items():
        out[k] = as_aligned(take(k), dtype if dtype is not None else v.dtype)
    return traverse_util.unflatten_dict(out)
