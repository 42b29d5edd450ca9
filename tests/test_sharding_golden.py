"""Golden table: every parameter's PartitionSpec for the CogVideoX-5b transformer (scanned layers) on
the mesh data=1,fsdp=4,sequence=1,tensor=2. Shapes come from ``jax.eval_shape`` (nothing is
materialised). A change to the rules table, a parameter's logical names or the module tree shows
up here as a readable diff.

Regenerate after an intended change:  UPDATE_GOLDEN=1 python -m pytest tests/test_sharding_golden.py
"""
import json
import os
import pathlib

import jax
import jax.numpy as jnp

from configs.transformer import get_preset
from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D, dummy_inputs
from cogvideox_jax.parallel.mesh import make_mesh
from cogvideox_jax.parallel.param_sharding import param_shardings

GOLDEN = pathlib.Path(__file__).parent / "golden" / "sharding_5b.json"
MESH = "data=1,fsdp=4,sequence=1,tensor=2"
REGEN = "UPDATE_GOLDEN=1 python -m pytest tests/test_sharding_golden.py"


def _spec_entry(entry):
    return None if entry is None else (entry if isinstance(entry, str) else list(entry))


def sharding_table(preset: str = "cogvideox-5b", mesh_spec: str = MESH) -> dict:
    """``{param path: {"shape": [...], "spec": [...]}}`` for ``preset`` on ``mesh_spec``."""
    cfg = get_preset(preset)
    assert cfg.scan_layers
    module = CogVideoXTransformer3D(cfg, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    abstract = jax.eval_shape(module.init, jax.random.PRNGKey(0), *dummy_inputs(cfg))["params"]
    shardings = param_shardings(abstract, make_mesh(mesh_spec))
    shapes = jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda x: x, __import__("flax").linen.unbox(abstract)))
    table = {}
    for (path, sh), leaf in zip(jax.tree_util.tree_leaves_with_path(shardings), shapes):
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        table[name] = {"shape": list(leaf.shape), "spec": [_spec_entry(e) for e in sh.spec]}
    return {"preset": preset, "mesh": mesh_spec, "params": dict(sorted(table.items()))}


def _dump(table: dict) -> str:
    """One parameter per line, so a review diff shows exactly which specs changed."""
    rows = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in table["params"].items()]
    return (f'{{"preset": {json.dumps(table["preset"])}, "mesh": {json.dumps(table["mesh"])}, "params": {{\n'
            + ",\n".join(rows) + "\n}}\n")


def test_5b_param_partition_specs_match_golden():
    got = sharding_table()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(_dump(got))
    assert GOLDEN.exists(), f"missing {GOLDEN}; generate it with:  {REGEN}"
    want = json.loads(GOLDEN.read_text())
    assert got["mesh"] == want["mesh"] and got["preset"] == want["preset"]
    g, w = got["params"], want["params"]
    missing, extra = sorted(set(w) - set(g)), sorted(set(g) - set(w))
    changed = [f"  {k}: shape {w[k]['shape']} spec {w[k]['spec']}  ->  shape {g[k]['shape']} spec {g[k]['spec']}"
               for k in sorted(set(g) & set(w)) if g[k] != w[k]]
    if missing or extra or changed:
        lines = [f"5b parameter shardings on {MESH} differ from {GOLDEN.name}:"]
        lines += [f"  missing: {k}" for k in missing] + [f"  new: {k}" for k in extra] + changed
        lines.append(f"If the change is intended, regenerate the golden file with:\n  {REGEN}")
        raise AssertionError("\n".join(lines))


def test_golden_covers_the_big_matrices():
    """Sanity of the table itself: every >=2-D weight of the 5b blocks is sharded on some axis, and
    the sharded parameter bytes are > 99% of the total (the golden file cannot silently be all-replicated)."""
    want = json.loads(GOLDEN.read_text())["params"]
    total = sharded = 0
    for name, entry in want.items():
        n = 1
        for d in entry["shape"]:
            n *= d
        total += n
        if any(e is not None for e in entry["spec"]):
            sharded += n
        elif name.startswith("transformer_blocks") and len(entry["shape"]) >= 3:
            raise AssertionError(f"{name} {entry['shape']} is replicated")
    assert 4.5e9 < total < 6e9, total  # ~5.6B transformer parameters
    assert sharded / total > 0.99, sharded / total
