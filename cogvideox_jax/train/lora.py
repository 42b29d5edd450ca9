"""LoRA on the attention projections (to_q / to_k / to_v / to_out) of a Flax param tree.

For a target kernel W (shape ``(*stack, *in_dims, *out_dims)``; ``stack`` = scanned-layer axes) the
adapter is ``A (*stack, in, r)``, ``B (*stack, r, out)``, with ``in``/``out`` the flattened dims, and
the effective kernel is ``W + (alpha/r)·A@B``. ``y = x@W + s·(x@A)@B`` equals ``x@(W + s·A@B)``, so the
model runs on ``merge_lora(base, lora)``: one small rank-r matmul per target per step, no change to the
transformer code, and only the LoRA tree is trainable (the optimizer state holds only LoRA params).

LoRA params are a dict ``{"blocks/0/attn1/to_q/kernel": {"a": ..., "b": ...}}`` (string keys, so they
checkpoint as plain pytrees). A initialised like PEFT (uniform ±1/√in), B zeros: the start model equals
the base model.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from jax.sharding import NamedSharding, PartitionSpec

SEP = "/"


def _is_target(path: Sequence[str], targets: Iterable[str]) -> bool:
    if path[-1] != "kernel":
        return False
    for part in path[:-1]:
        for t in targets:
            if part == t or part.startswith(t + "_") or part.startswith(t + "."):
                return True
    return False


def _split_dims(path: Sequence[str], shape, num_stack: int) -> tuple[int, int]:
    """(number of input dims, number of output dims) after ``num_stack`` leading stack axes.

    q/k/v: the first dim is the input (``(D, H, Dh)`` or ``(D, inner)``); to_out: the last dim is the
    output (``(H, Dh, D)`` or ``(inner, D)``)."""
    rest = len(shape) - num_stack
    if any(p.startswith("to_out") for p in path):
        return rest - 1, 1
    return 1, rest - 1


def lora_targets(params, targets: Sequence[str], stack_axes: int | dict = 0) -> dict:
    """``{key: (path, kernel_shape, num_stack, n_in, n_out)}`` for every target kernel.

    ``stack_axes``: number of leading scanned-layer axes of every kernel (or ``{key: n}``)."""
    flat = traverse_util.flatten_dict(params)
    out = {}
    for path, leaf in flat.items():
        path = tuple(str(p) for p in path)
        if not _is_target(path, targets):
            continue
        key = SEP.join(path)
        ns = stack_axes.get(key, 0) if isinstance(stack_axes, dict) else stack_axes
        n_in, n_out = _split_dims(path, leaf.shape, ns)
        out[key] = (path, tuple(leaf.shape), ns, n_in, n_out)
    if not out:
        raise ValueError(f"no LoRA targets {tuple(targets)} found among the param paths")
    return out


def stack_axes_from_names(logical_names) -> dict:
    """``{key: number of leading 'layers' axes}`` from ``nn.get_partition_spec(boxed_params)``."""
    flat = traverse_util.flatten_dict(logical_names)  # leaves: PartitionSpec or None
    res = {}
    for path, spec in flat.items():
        n = 0
        for name in (tuple(spec) if spec is not None else ()):
            if name != "layers":
                break
            n += 1
        res[SEP.join(str(p) for p in path)] = n
    return res


def _sizes(shape, ns, n_in):
    stack = shape[:ns]
    return stack, math.prod(shape[ns:ns + n_in]), math.prod(shape[ns + n_in:])


def init_lora_params(key, params, rank: int, targets: Sequence[str], stack_axes: int | dict = 0,
                     dtype=jnp.float32) -> dict:
    """A ~ U(±1/√in), B = 0 for every target kernel."""
    info = lora_targets(params, targets, stack_axes)
    lora = {}
    for i, (k, (_, shape, ns, n_in, _n_out)) in enumerate(sorted(info.items())):
        stack, d_in, d_out = _sizes(shape, ns, n_in)
        bound = 1.0 / math.sqrt(d_in)
        a = jax.random.uniform(jax.random.fold_in(key, i), (*stack, d_in, rank), dtype, -bound, bound)
        lora[k] = {"a": a, "b": jnp.zeros((*stack, rank, d_out), dtype)}
    return lora


def lora_delta(a, b, kernel_shape, scale: float):
    """``scale·A@B`` reshaped to the kernel shape (float32)."""
    d = jnp.einsum("...ir,...ro->...io", a.astype(jnp.float32), b.astype(jnp.float32)) * scale
    return d.reshape(kernel_shape)


def merge_lora(params, lora: dict, scale: float):
    """Base params with ``W + scale·A@B`` at every LoRA target (traced, or on host numpy arrays when
    every input is one: then nothing goes to a device)."""
    flat = traverse_util.flatten_dict(params)
    keymap = {SEP.join(str(p) for p in path): path for path in flat}
    for k, ab in lora.items():
        path = keymap[k]
        w = flat[path]
        if all(isinstance(x, np.ndarray) for x in (w, ab["a"], ab["b"])):
            delta = np.matmul(ab["a"].astype(np.float32), ab["b"].astype(np.float32)) * np.float32(scale)
            flat[path] = (w.astype(np.float32) + delta.reshape(w.shape)).astype(w.dtype)
        else:
            flat[path] = (jnp.asarray(w, jnp.float32) + lora_delta(ab["a"], ab["b"], w.shape, scale)).astype(w.dtype)
    return traverse_util.unflatten_dict(flat)


def lora_scale(rank: int, alpha: float) -> float:
    return float(alpha) / float(rank)


def lora_shardings(lora: dict, base_shardings, mesh) -> dict:
    """A takes the base kernel's stack + input-dim sharding, B its stack + output-dim sharding
    (only when that side is a single kernel dim; otherwise that dim is replicated)."""
    flat = traverse_util.flatten_dict(base_shardings)
    specs = {SEP.join(str(p) for p in path): tuple(s.spec) for path, s in flat.items()}
    out = {}
    for k, ab in lora.items():
        nstack = ab["a"].ndim - 2
        spec = specs.get(k, ())
        stack = tuple(spec[:nstack]) + (None,) * (nstack - len(spec[:nstack]))
        kernel_ndim = len(spec)
        in_spec = spec[nstack] if kernel_ndim >= nstack + 2 and _is_single(k, kernel_ndim - nstack, True) else None
        out_spec = spec[-1] if kernel_ndim >= nstack + 2 and _is_single(k, kernel_ndim - nstack, False) else None
        out[k] = {"a": NamedSharding(mesh, PartitionSpec(*stack, in_spec, None)),
                  "b": NamedSharding(mesh, PartitionSpec(*stack, None, out_spec))}
    return out


def _is_single(key: str, rest: int, input_side: bool) -> bool:
    n_in, n_out = _split_dims(key.split(SEP), (0,) * rest, 0)
    return (n_in if input_side else n_out) == 1


def count_params(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))
