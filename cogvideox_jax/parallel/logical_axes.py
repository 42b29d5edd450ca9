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
# embed       model width (transformer inner dim)         -> fsdp (FSDP-style param sharding)
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
    ("embed", "fsdp"),
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


def constrain(x, names: Sequence[str | None]):
    """Constrain an activation's sharding by logical names (no-op outside a mesh/rules context)."""
    return nn.with_logical_constraint(x, tuple(names))
