"""The one table mapping logical axis names to mesh axes.

Every parameter is created with logical axis names (``nn.with_logical_partitioning``) and
activations are constrained with ``nn.with_logical_constraint`` using the names below. The
mapping from logical names to physical mesh axes lives only here (``LOGICAL_AXIS_RULES``).

Mesh axes: ``data`` (pure data parallel), ``fsdp`` (data parallel + parameter sharding),
``sequence`` (sequence / context parallel), ``tensor`` (tensor parallel).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn

MESH_AXES: tuple[str, ...] = ("data", "fsdp", "sequence", "tensor")

# Parameter logical axes ------------------------------------------------------------------
# embed       model width (transformer inner dim)         -> fsdp, then sequence (FSDP-style param sharding;
#             a sequence-parallel group shards the weights and optimizer state too, ZeRO-3 style, instead
#             of holding a full copy per sequence shard)
# mlp         feed-forward hidden                         -> tensor
# heads       attention heads (q/k/v/out projections)     -> tensor
# kv          per-head feature dim                        -> unsharded
# text_embed  T5 output width fed to the transformer      -> fsdp
# time_embed  timestep embedding width                    -> unsharded
# vocab       T5 vocabulary                               -> tensor
# patch       flattened patch features                    -> unsharded
# layers      the stacked-layer axis of nn.scan           -> unsharded
# norm        LayerNorm/GroupNorm scale/bias              -> unsharded
# conv_t/h/w  conv kernel taps                            -> unsharded
# conv_in     conv input channels                         -> unsharded
# conv_out    conv output channels                        -> fsdp
# Activation logical axes -----------------------------------------------------------------
# activation_batch, activation_length, activation_embed, activation_heads, activation_kv,
# activation_mlp, activation_frames, activation_height, activation_width, activation_channels
LOGICAL_AXIS_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    # parameters
    ("embed", ("fsdp", "sequence")),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("text_embed", "fsdp"),
    ("time_embed", None),
    ("vocab", "tensor"),
    ("patch", None),
    ("layers", None),
    ("norm", None),
    ("conv_t", None),
    ("conv_h", None),
    ("conv_w", None),
    ("conv_in", None),
    ("conv_out", "fsdp"),
    ("relpos_buckets", None),
    # activations
    ("activation_batch", ("data", "fsdp")),
    ("activation_length", "sequence"),
    ("activation_embed", None),
    ("activation_heads", "tensor"),
    ("activation_kv", None),
    ("activation_mlp", "tensor"),
    ("activation_frames", "sequence"),
    ("activation_height", None),
    ("activation_width", None),
    ("activation_channels", None),
)


def logical_init(init_fn, names: Sequence[str | None]):
    """Wrap an initializer so the created parameter carries logical axis ``names``."""
    return nn.with_logical_partitioning(init_fn, tuple(names))


# activation names whose dimension may be split unevenly (XLA pads the last shard): a sequence of
# 17550 video tokens still splits over sequence=4. Every other name keeps only the mesh axes that
# divide its dimension, as parameters and inputs do (``param_sharding.logical_to_mesh_axes``,
# ``sharded_apply.batch_axes``), so a batch of 2 on data=2,fsdp=2 is constrained to ``data`` -
# exactly how the inputs are sharded - instead of an uneven 4-way split the partitioner can only
# reach by replicating the tensor ("Involuntary full rematerialization").
UNEVEN_OK = frozenset({"activation_length", "activation_frames"})


def activation_spec(names: Sequence[str | None], shape: Sequence[int], mesh, rules=LOGICAL_AXIS_RULES):
    """The ``PartitionSpec`` ``constrain`` gives an activation of ``shape`` with logical ``names`` on
    ``mesh`` (a ``Mesh`` or ``AbstractMesh``): per dimension the rule's mesh axes, in order, that are
    larger than 1, not used by an earlier dimension, and divide it (``UNEVEN_OK`` names: that leave
    no shard empty)."""
    from jax.sharding import PartitionSpec

    table = dict(rules)
    sizes = dict(mesh.shape)
    used: set[str] = set()
    out = []
    for name, dim in zip(names, shape):
        target = table.get(name) if name is not None else None
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        kept, prod = [], 1
        for ax in axes:
            n = sizes.get(ax, 1)
            if ax in used or n == 1:
                continue
            fits = dim >= prod * n if name in UNEVEN_OK else dim % (prod * n) == 0
            if fits:
                kept.append(ax)
                prod *= n
        used.update(kept)
        out.append(None if not kept else (kept[0] if len(kept) == 1 else tuple(kept)))
    return PartitionSpec(*out)


def constrain(x, names: Sequence[str | None]):
    """Constrain an activation's sharding by logical names (no-op outside a mesh/rules context):
    ``activation_spec`` on the ambient (``jax.set_mesh``) mesh with the active rules
    (``nn.logical_axis_rules``). Inside ``shard_map`` (manual axes) it is flax's
    ``with_logical_constraint``."""
    import jax

    rules = nn.get_logical_axis_rules()
    if not rules:
        return x
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    if any(t == jax.sharding.AxisType.Manual for t in mesh.axis_types):
        return nn.with_logical_constraint(x, tuple(names))
    return jax.lax.with_sharding_constraint(x, activation_spec(tuple(names), x.shape, mesh, rules))
