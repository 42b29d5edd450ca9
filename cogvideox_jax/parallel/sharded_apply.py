"""Run a Linen module on a mesh: the sharding context, batch shardings, and a jitted sharded ``apply``.

Logical constraints (``constrain`` / ``nn.with_logical_constraint``) only take effect while both a
mesh (``jax.set_mesh``) and the logical rules (``nn.logical_axis_rules``) are active *while the
function is traced*. ``sharding_context(mesh)`` enters both; ``sharded_jit`` wraps a function so
that every call (and so every trace) happens inside it.

    mesh = make_mesh("data=2,fsdp=2,sequence=2")
    abstract = jax.eval_shape(module.init, key, *dummy_inputs)["params"]   # boxed, no memory
    shardings = param_shardings(abstract, mesh)
    params = place_params(host_params, shardings)
    apply = sharded_apply(module, mesh, shardings)      # jit(in_shardings=(params, batch, ...))
    out = apply(params, latents, text, timestep)
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from cogvideox_jax.parallel.logical_axes import LOGICAL_AXIS_RULES

BATCH_AXES = ("data", "fsdp")


@contextlib.contextmanager
def sharding_context(mesh: Mesh | None, rules=LOGICAL_AXIS_RULES):
    """Mesh + logical axis rules, so that logical activation constraints apply. ``None``: no-op."""
    if mesh is None:
        yield
        return
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


def batch_axes(mesh: Mesh, batch: int, axes: Sequence[str] = BATCH_AXES):
    """The batch mesh axes (``data``, ``fsdp``) that together divide ``batch`` (greedy, in order)."""
    kept, prod = [], 1
    for ax in axes:
        n = mesh.shape.get(ax, 1)
        if n > 1 and batch % (prod * n) == 0:
            kept.append(ax)
            prod *= n
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else tuple(kept)


def batch_sharding(mesh: Mesh, shape: Sequence[int], axes: Sequence[str] = BATCH_AXES) -> NamedSharding:
    """Shard the leading (batch) dimension of an array of ``shape`` over the batch axes that divide it;
    the other dimensions are replicated."""
    if len(shape) == 0:
        return NamedSharding(mesh, PartitionSpec())
    return NamedSharding(mesh, PartitionSpec(batch_axes(mesh, shape[0], axes), *([None] * (len(shape) - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def sharded_jit(fn: Callable, mesh: Mesh | None, *, rules=LOGICAL_AXIS_RULES, **jit_kwargs) -> Callable:
    """``jax.jit(fn, **jit_kwargs)`` whose calls (hence traces) run inside ``sharding_context``."""
    jitted = jax.jit(fn, **jit_kwargs)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with sharding_context(mesh, rules):
            return jitted(*args, **kwargs)

    call.lower = lambda *a, **k: _lower_in_context(jitted, mesh, rules, *a, **k)
    call.jitted = jitted
    return call


def _lower_in_context(jitted, mesh, rules, *args, **kwargs):
    with sharding_context(mesh, rules):
        return jitted.lower(*args, **kwargs)


def sharded_apply(module: nn.Module, mesh: Mesh, params_shardings: Any, *, input_shardings=None,
                  out_shardings=None, method: str | None = None, rules=LOGICAL_AXIS_RULES) -> Callable:
    """A jitted ``f(params, *inputs) -> module.apply({"params": params}, *inputs)`` on ``mesh``.

    ``params_shardings``: from ``param_shardings(abstract_params, mesh)``. ``input_shardings``: a
    tuple matching the inputs, or ``None`` to shard each input's leading dimension over the batch
    axes (decided per call from the input shapes). ``out_shardings``: ``None`` lets XLA choose.
    """

    def apply(params, *inputs):
        kw = {} if method is None else {"method": method}
        return module.apply({"params": params}, *inputs, **kw)

    cache: dict = {}

    def call(params, *inputs):
        shapes = tuple(getattr(x, "shape", ()) for x in inputs)
        if shapes not in cache:
            in_sh = input_shardings if input_shardings is not None else tuple(batch_sharding(mesh, s) for s in shapes)
            cache[shapes] = sharded_jit(apply, mesh, rules=rules, in_shardings=(params_shardings, *in_sh),
                                        out_shardings=out_shardings)
        return cache[shapes](params, *inputs)

    return call
