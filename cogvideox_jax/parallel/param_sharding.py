"""Parameter shardings from logical axis names, and placing host params onto a mesh.

Logical names come from the params' ``nn.Partitioned`` metadata (created with
``logical_init``); the one rules table in ``logical_axes.py`` maps them to mesh axes. A mesh
axis that does not divide a dimension is dropped for that parameter (the dimension is
replicated), so odd-sized tiny test models still shard.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from cogvideox_jax.parallel.logical_axes import LOGICAL_AXIS_RULES


def logical_to_mesh_axes(names: Sequence[str | None], shape: Sequence[int], mesh: Mesh,
                         rules=LOGICAL_AXIS_RULES) -> PartitionSpec:
    """Resolve logical axis ``names`` of an array of ``shape`` to a ``PartitionSpec`` on ``mesh``."""
    table = dict(rules)
    used: set[str] = set()
    out = []
    for name, dim in zip(names, shape):
        target = table.get(name) if name is not None else None
        if name is not None and name not in table:
            raise KeyError(f"logical axis {name!r} has no rule in LOGICAL_AXIS_RULES")
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        kept = []
        size = 1
        for ax in axes:
            if ax in used or mesh.shape.get(ax, 1) == 1:
                continue
            if dim % (size * mesh.shape[ax]) == 0:
                kept.append(ax)
                size *= mesh.shape[ax]
        used.update(kept)
        out.append(None if not kept else (kept[0] if len(kept) == 1 else tuple(kept)))
    return PartitionSpec(*out)


def param_shardings(boxed_abstract_params, mesh: Mesh, rules=LOGICAL_AXIS_RULES):
    """``NamedSharding`` for every parameter from its logical names and shape.

    ``boxed_abstract_params``: e.g. ``jax.eval_shape(module.init, key, *args)["params"]`` (still boxed).
    """
    specs = nn.get_partition_spec(boxed_abstract_params)
    shapes = nn.unbox(boxed_abstract_params)

    def one(spec, leaf):
        names = tuple(spec) if spec is not None else (None,) * len(leaf.shape)
        return NamedSharding(mesh, logical_to_mesh_axes(names, leaf.shape, mesh, rules))

    return jax.tree_util.tree_map(one, specs, shapes, is_leaf=lambda x: isinstance(x, PartitionSpec) or x is None)


def place_params(host_params, shardings):
    """Put host (numpy) params on the mesh shard by shard: each device only receives its slice,
    the whole array is never materialised on one device."""

    def one(x, sharding):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree_util.tree_map(one, host_params, shardings)


def per_device_bytes(params) -> dict:
    """Bytes of params held by each addressable device (to check FSDP memory savings)."""
    totals: dict = {}
    for leaf in jax.tree_util.tree_leaves(params):
        for shard in leaf.addressable_shards:
            totals[shard.device] = totals.get(shard.device, 0) + shard.data.nbytes
    return totals
