"""Mesh construction from strings and logical-name parameter sharding."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from cogvideox_jax.parallel.logical_axes import LOGICAL_AXIS_RULES, logical_init
from cogvideox_jax.parallel.mesh import make_mesh, parse_mesh_spec, resolve_mesh_shape
from cogvideox_jax.parallel.param_sharding import (
    logical_to_mesh_axes, param_shardings, per_device_bytes, place_params)


def test_parse_and_resolve():
    assert resolve_mesh_shape("data=2,fsdp=2,sequence=2", 8) == {"data": 2, "fsdp": 2, "sequence": 2, "tensor": 1}
    assert resolve_mesh_shape("data=2,fsdp=-1", 8)["fsdp"] == 4
    with pytest.raises(ValueError, match="unknown mesh axis"):
        parse_mesh_spec("batch=2")
    with pytest.raises(ValueError, match="at most one"):
        parse_mesh_spec("data=-1,fsdp=-1")
    with pytest.raises(ValueError, match="devices"):
        resolve_mesh_shape("data=3", 8)


def test_make_mesh_axes():
    mesh = make_mesh("data=2,sequence=4")
    assert dict(mesh.shape) == {"data": 2, "fsdp": 1, "sequence": 4, "tensor": 1}
    assert make_mesh(mesh) is mesh


def test_logical_to_mesh_drops_non_dividing_axes():
    mesh = make_mesh("fsdp=4,tensor=2")
    assert logical_to_mesh_axes(("embed", "mlp"), (64, 128), mesh) == P("fsdp", "tensor")
    # 6 is not divisible by fsdp=4 -> replicated along that dim
    assert logical_to_mesh_axes(("embed", "mlp"), (6, 128), mesh) == P(None, "tensor")
    with pytest.raises(KeyError):
        logical_to_mesh_axes(("no_such_axis",), (8,), mesh)


class _Toy(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Dense(64, kernel_init=logical_init(nn.initializers.lecun_normal(), ("embed", "mlp")),
                     bias_init=logical_init(nn.initializers.zeros, ("mlp",)))(x)
        return nn.Dense(32, kernel_init=logical_init(nn.initializers.lecun_normal(), ("mlp", "embed")),
                        bias_init=logical_init(nn.initializers.zeros, ("embed",)))(x)


def test_fsdp_params_split_across_devices():
    mesh = make_mesh("fsdp=8")
    x = jnp.ones((2, 32))
    boxed = jax.eval_shape(_Toy().init, jax.random.PRNGKey(0), x)["params"]
    shardings = param_shardings(boxed, mesh)
    host = jax.tree_util.tree_map(np.asarray, nn.unbox(_Toy().init(jax.random.PRNGKey(0), x)["params"]))
    placed = place_params(host, shardings)
    total = sum(v.nbytes for v in jax.tree_util.tree_leaves(host))
    per_dev = per_device_bytes(placed)
    assert len(per_dev) == 8
    # everything is split 8 ways except the 'mlp' bias (64 floats), which maps to 'tensor' (size 1)
    replicated = host["Dense_0"]["bias"].nbytes
    assert max(per_dev.values()) == (total - replicated) // 8 + replicated
    y_ref = _Toy().apply({"params": host}, x)
    y = jax.jit(lambda p, x: _Toy().apply({"params": p}, x))(placed, x)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), rtol=1e-6, atol=1e-6)


def test_rules_table_names_are_unique():
    names = [n for n, _ in LOGICAL_AXIS_RULES]
    assert len(names) == len(set(names))
