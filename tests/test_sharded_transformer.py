"""The transformer on a mesh (FSDP params, data/sequence-sharded activations, Ulysses/ring attention)
equals the single-device forward; FSDP divides the per-device parameter bytes."""
import dataclasses

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.transformer import TransformerConfig
from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D
from cogvideox_jax.parallel.mesh import make_mesh
from cogvideox_jax.parallel.param_sharding import param_shardings, per_device_bytes, place_params
from cogvideox_jax.parallel.sharded_apply import sharded_apply

# 8 heads: Ulysses divides for every sequence degree used here; text length 7 and 3*2*3 = 18 video
# tokens give a joint length of 25, which neither 2 nor 8 divides (exercises the padding path).
TINY = TransformerConfig(num_attention_heads=8, attention_head_dim=16, in_channels=4, out_channels=4, num_layers=2,
                         time_embed_dim=16, text_embed_dim=24, sample_width=6, sample_height=4, sample_frames=9,
                         max_text_seq_length=7, use_rotary_positional_embeddings=True)


def _perturbed_params(module, inputs, seed=0):
    boxed = jax.jit(module.init)(jax.random.PRNGKey(seed), *inputs)["params"]
    params = jax.tree_util.tree_map(np.asarray, jax.device_get(flax.linen.unbox(boxed)))
    rng = np.random.default_rng(seed)  # zero-initialised biases would hide layout bugs
    return jax.tree_util.tree_map(lambda x: (x + 0.05 * rng.standard_normal(x.shape)).astype(np.float32), params)


def _inputs(batch, seed=1):
    rng = np.random.default_rng(seed)
    lat = rng.standard_normal((batch, 3, TINY.sample_height, TINY.sample_width, TINY.in_channels)).astype(np.float32)
    text = rng.standard_normal((batch, TINY.max_text_seq_length, TINY.text_embed_dim)).astype(np.float32)
    t = rng.uniform(0, 999, (batch,)).astype(np.float32)
    return lat, text, t


@pytest.fixture(scope="module")
def reference():
    """Single-device forward for batch 8 (sliced per case) and the host params."""
    module = CogVideoXTransformer3D(TINY)
    inputs = _inputs(8)
    params = _perturbed_params(module, tuple(jnp.asarray(x[:1]) for x in inputs))
    out = jax.jit(lambda p, *a: module.apply({"params": p}, *a))(params, *inputs)
    return params, inputs, np.asarray(out)


MESHES = [
    # data, fsdp, sequence, tensor ; scheme ; batch
    ("data=8", "ulysses", 8),
    ("data=2,fsdp=2,sequence=2", "ulysses", 4),
    ("data=2,fsdp=2,sequence=2", "ring", 4),
    ("sequence=8", "ulysses", 2),
    ("sequence=8", "ring", 2),
]


@pytest.mark.parametrize("spec,scheme,batch", MESHES, ids=[f"{m[0]}-{m[1]}" for m in MESHES])
def test_sharded_forward_matches_single_device(reference, spec, scheme, batch):
    params, inputs, ref = reference
    mesh = make_mesh(spec)
    module = CogVideoXTransformer3D(dataclasses.replace(TINY, sequence_parallel=scheme), mesh=mesh)
    abstract = jax.eval_shape(module.init, jax.random.PRNGKey(0), *(jnp.asarray(x[:1]) for x in inputs))["params"]
    shardings = param_shardings(abstract, mesh)
    placed = place_params(params, shardings)
    apply = sharded_apply(module, mesh, shardings)
    got = apply(placed, *(x[:batch] for x in inputs))
    chex.assert_shape(got, ref[:batch].shape)
    # the inputs really were sharded as asked
    assert got.sharding.mesh.shape == mesh.shape
    ref_b = ref[:batch]
    rel = np.linalg.norm(np.asarray(got) - ref_b) / np.linalg.norm(ref_b)
    assert rel <= 1e-5, f"{spec}/{scheme}: relative error {rel:.2e}"
    np.testing.assert_allclose(np.asarray(got), ref_b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spec,batch", [("data=2,fsdp=2,tensor=2", 4), ("fsdp=8", 8)])
def test_sharded_splash_forward_matches_single_device(reference, spec, batch, monkeypatch):
    """attention_backend="splash" (interpreted on CPU) on a mesh: the kernel runs per (batch, head) shard
    under shard_map (GSPMD cannot partition Mosaic kernels) and equals the single-device XLA forward."""
    params, inputs, ref = reference
    mesh = make_mesh(spec)
    module = CogVideoXTransformer3D(dataclasses.replace(TINY, attention_backend="splash"), mesh=mesh)
    abstract = jax.eval_shape(module.init, jax.random.PRNGKey(0), *(jnp.asarray(x[:1]) for x in inputs))["params"]
    shardings = param_shardings(abstract, mesh)
    from cogvideox_jax.models import attention as attention_mod

    calls = []
    orig = attention_mod.partitioned
    monkeypatch.setattr(attention_mod, "partitioned", lambda *a: calls.append(a[1].shape) or orig(*a))
    apply = sharded_apply(module, mesh, shardings)
    got = apply(place_params(params, shardings), *(x[:batch] for x in inputs))
    assert calls and dict(calls[0]) == dict(mesh.shape)  # the kernel ran per shard on this mesh
    np.testing.assert_allclose(np.asarray(got), ref[:batch], rtol=1e-4, atol=2e-5)


def test_sequence_parallel_really_used(reference):
    """The sequence-parallel path is taken (a Ulysses-incompatible head count raises)."""
    params, inputs, _ = reference
    mesh = make_mesh("sequence=8")
    cfg = dataclasses.replace(TINY, num_attention_heads=4, attention_head_dim=16, sequence_parallel="ulysses")
    module = CogVideoXTransformer3D(cfg, mesh=mesh)
    with pytest.raises(ValueError, match="Ulysses"):
        jax.eval_shape(module.init, jax.random.PRNGKey(0), *(jnp.asarray(x[:1]) for x in inputs))


def _expected_bytes(abstract, shardings, mesh):
    """Bytes per device implied by the PartitionSpecs (each leaf / product of its sharded axes)."""
    total = 0
    for leaf, sh in zip(jax.tree_util.tree_leaves(flax.linen.unbox(abstract)), jax.tree_util.tree_leaves(shardings)):
        div = 1
        for entry in sh.spec:
            for ax in (entry,) if isinstance(entry, str) else (entry or ()):
                div *= mesh.shape[ax]
        total += leaf.size * leaf.dtype.itemsize // div
    return total


def test_fsdp_divides_per_device_param_bytes():
    """Per-device bytes, measured from the addressable shards, ~ total / fsdp (x tensor) degree for a
    model whose width the degrees divide (only small norm / timestep-MLP leaves stay replicated)."""
    cfg = dataclasses.replace(TINY, num_attention_heads=8, attention_head_dim=32, time_embed_dim=16)
    module = CogVideoXTransformer3D(cfg)
    inputs = tuple(jnp.asarray(x[:1]) for x in _inputs(1))
    abstract = jax.eval_shape(module.init, jax.random.PRNGKey(0), *inputs)["params"]
    host = jax.tree_util.tree_map(lambda s: np.ones(s.shape, s.dtype), flax.linen.unbox(abstract))
    total = sum(x.nbytes for x in jax.tree_util.tree_leaves(host))
    assert total > 5_000_000  # not too tiny: the replicated leaves must not dominate
    # (mesh, divisor, slack): with tensor=4 the AdaLN / embedding kernels are sharded over fsdp only
    for spec, divisor, slack in (("fsdp=8", 8, 1.06), ("fsdp=4,data=2", 4, 1.06), ("fsdp=2,tensor=4", 8, 1.3)):
        mesh = make_mesh(spec)
        shardings = param_shardings(abstract, mesh)
        per_dev = per_device_bytes(place_params(host, shardings))
        assert len(per_dev) == 8
        assert len(set(per_dev.values())) == 1, per_dev  # balanced
        measured = next(iter(per_dev.values()))
        assert measured == _expected_bytes(abstract, shardings, mesh)
        assert total / divisor <= measured <= slack * total / divisor, (spec, measured, total / divisor)
