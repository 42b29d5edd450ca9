"""Device meshes built from config / CLI strings.

``make_mesh("data=2,fsdp=2,sequence=2,tensor=1")`` builds a mesh with the four named axes of
``MESH_AXES``; axes left out have size 1 and one axis may be ``-1`` (= all remaining devices).
Multi-slice (hybrid ICI/DCN) meshes take a second spec for the slow DCN dimension:
``make_mesh("fsdp=-1", dcn="data=2")``.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from cogvideox_jax.parallel.logical_axes import MESH_AXES

MeshSpec = str | Mapping[str, int] | Mesh | None


def parse_mesh_spec(spec: str | Mapping[str, int] | None) -> dict[str, int]:
    """``"data=2,sequence=4"`` -> ``{"data": 2, "fsdp": 1, "sequence": 4, "tensor": 1}`` (unresolved -1 kept)."""
    sizes = {axis: 1 for axis in MESH_AXES}
    if spec is None or spec == "":
        return sizes
    items = spec.items() if isinstance(spec, Mapping) else (_split_item(s) for s in spec.split(",") if s.strip())
    for name, size in items:
        if name not in sizes:
            raise ValueError(f"unknown mesh axis {name!r} in {spec!r}; valid axes: {', '.join(MESH_AXES)}")
        size = int(size)
        if size == 0 or size < -1:
            raise ValueError(f"mesh axis {name}={size}: sizes are positive, or -1 for 'the rest'")
        sizes[name] = size
    if sum(1 for v in sizes.values() if v == -1) > 1:
        raise ValueError(f"at most one mesh axis may be -1 in {spec!r}")
    return sizes


def _split_item(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise ValueError(f"mesh spec items look like 'axis=size', got {item!r}")
    name, size = item.split("=", 1)
    return name.strip(), size.strip()


def resolve_mesh_shape(spec: str | Mapping[str, int] | None, num_devices: int) -> dict[str, int]:
    """Fill in a ``-1`` axis and check that the axis sizes multiply to ``num_devices``."""
    sizes = parse_mesh_spec(spec)
    known = math.prod(v for v in sizes.values() if v != -1)
    if -1 in sizes.values():
        if num_devices % known:
            raise ValueError(f"mesh {spec!r}: {num_devices} devices are not divisible by the fixed axes ({known})")
        sizes = {k: (num_devices // known if v == -1 else v) for k, v in sizes.items()}
    elif known != num_devices:
        raise ValueError(
            f"mesh {spec!r} has {known} devices but {num_devices} are available; "
            "make the sizes multiply to the device count or use -1 for one axis"
        )
    return sizes


def fit_mesh_spec(spec: str, num_devices: int) -> str:
    """``spec`` itself when it fits ``num_devices``; when it asks for more devices than there are, its
    fixed axes shrunk (each to the largest divisor of the devices left) so that it fits: ``"data=2,fsdp=-1"``
    on one device -> ``"data=1,fsdp=1"``. Anything else that does not fit stays an error."""
    try:
        resolve_mesh_shape(spec, num_devices)
        return spec
    except ValueError:
        sizes = parse_mesh_spec(spec)
        if math.prod(v for v in sizes.values() if v != -1) <= num_devices:
            raise
    left, fitted = num_devices, {}
    for axis, size in sizes.items():
        if size != -1:
            fitted[axis] = math.gcd(size, left)
            left //= fitted[axis]
    fitted = {axis: fitted.get(axis, left) for axis in sizes}
    if math.prod(fitted.values()) != num_devices:
        raise ValueError(f"mesh {spec!r} does not fit {num_devices} devices")
    return ",".join(f"{axis}={size}" for axis, size in fitted.items() if size != 1 or axis in dict(
        _split_item(s) for s in str(spec).split(",") if s.strip()))


def make_mesh(spec: MeshSpec = None, *, dcn: str | Mapping[str, int] | None = None,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Build a ``Mesh`` with axes ``MESH_AXES`` (all ``AxisType.Auto``, GSPMD-style propagation).

    ``spec`` may already be a ``Mesh`` (returned as is). Without a spec, every device goes to
    ``fsdp``. With ``dcn``, ``spec`` is the per-slice (ICI) shape and ``dcn`` the across-slice shape.
    """
    if isinstance(spec, Mesh):
        return spec
    devices = list(devices if devices is not None else jax.devices())
    if spec is None:
        spec = "fsdp=-1"
    if dcn is None:
        sizes = resolve_mesh_shape(spec, len(devices))
        shape = tuple(sizes[a] for a in MESH_AXES)
        auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
        return jax.make_mesh(shape, MESH_AXES, axis_types=auto, devices=devices)
    dcn_sizes = resolve_mesh_shape(dcn, _num_slices(devices))
    per_slice = len(devices) // math.prod(dcn_sizes.values())
    ici_sizes = resolve_mesh_shape(spec, per_slice)
    from jax.experimental import mesh_utils

    arr = mesh_utils.create_hybrid_device_mesh(
        tuple(ici_sizes[a] for a in MESH_AXES), tuple(dcn_sizes[a] for a in MESH_AXES), devices
    )
    auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    return Mesh(arr, MESH_AXES, axis_types=auto)


def _num_slices(devices: Sequence[jax.Device]) -> int:
    slices = {getattr(d, "slice_index", 0) for d in devices}
    return len(slices)


def mesh_shape_str(mesh: Mesh) -> str:
    return ",".join(f"{k}={v}" for k, v in mesh.shape.items())


def local_batch_divisor(mesh: Mesh) -> int:
    """How many ways the batch is split (``data`` × ``fsdp``)."""
    return int(np.prod([mesh.shape[a] for a in ("data", "fsdp")]))
