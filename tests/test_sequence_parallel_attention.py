"""Ulysses and ring attention over 8 simulated devices equal single-device attention."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cogvideox_jax.parallel.mesh import make_mesh
from cogvideox_jax.parallel.sequence_parallel_attention import sequence_parallel_attention


def _reference(q, k, v):
    return jax.nn.dot_product_attention(q, k, v, implementation="xla")


@pytest.mark.parametrize("scheme", ["ulysses", "ring"])
@pytest.mark.parametrize("mesh_spec,batch", [("sequence=8", 1), ("data=2,sequence=4", 2),
                                             ("data=2,fsdp=2,sequence=2", 4), ("sequence=4,tensor=2", 2)])
def test_matches_single_device(scheme, mesh_spec, batch):
    mesh = make_mesh(mesh_spec)
    length = 37  # e.g. 13 text + 24 video tokens: not divisible by the sequence degree
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.standard_normal((batch, length, 8, 16)), jnp.float32) for _ in range(3))
    got = jax.jit(lambda q, k, v: sequence_parallel_attention(q, k, v, mesh, scheme=scheme))(q, k, v)
    ref = _reference(q, k, v)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-5, atol=1e-5)


def test_ulysses_head_divisibility_error():
    mesh = make_mesh("sequence=8")
    q = jnp.zeros((1, 16, 6, 8))
    with pytest.raises(ValueError, match="heads per tensor shard"):
        sequence_parallel_attention(q, q, q, mesh, scheme="ulysses")


def test_ring_handles_heads_not_divisible():
    mesh = make_mesh("sequence=8")
    rng = np.random.default_rng(1)
    q, k, v = (jnp.asarray(rng.standard_normal((1, 21, 6, 8)), jnp.float32) for _ in range(3))
    got = sequence_parallel_attention(q, k, v, mesh, scheme="ring")
    np.testing.assert_allclose(np.asarray(got), np.asarray(_reference(q, k, v)), rtol=1e-5, atol=1e-5)
