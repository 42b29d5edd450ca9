"""The attention entry point: backend resolution, splash (Pallas, interpret mode) == XLA == a plain
fp32 softmax reference, with sequence lengths that need padding to the kernel's block size."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cogvideox_jax.models.attention import dot_product_attention, resolve_backend, splash_attention


def _qkv(b, length, h, d, seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    return tuple(jax.random.normal(k, (b, length, h, d), jnp.float32) for k in keys)


def _reference(q, k, v):
    """softmax(q k^T / sqrt(D)) v in float64 numpy."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    s = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhqk,bkhd->bqhd", p, v)


def test_auto_backend_is_xla_on_cpu():
    assert jax.devices()[0].platform == "cpu"
    assert resolve_backend("auto", jnp.float32) == "xla"
    assert resolve_backend("auto", jnp.bfloat16) == "xla"
    assert resolve_backend("splash", jnp.float32) == "splash"
    with pytest.raises(ValueError, match="unknown attention backend"):
        resolve_backend("flash", jnp.float32)


@pytest.mark.parametrize("length", [20, 130], ids=["L20", "L130"])
def test_xla_matches_reference(length):
    q, k, v = _qkv(2, length, 3, 16)
    out = jax.jit(lambda *a: dot_product_attention(*a, backend="xla"))(q, k, v)
    chex.assert_shape(out, (2, length, 3, 16))
    np.testing.assert_allclose(np.asarray(out), _reference(q, k, v), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("length,block", [(20, 512), (200, 128)], ids=["L20-one-block", "L200-two-blocks"])
def test_splash_interpret_matches_xla(length, block):
    """L is not a multiple of 128: padded keys must be masked (segment ids), padded queries dropped."""
    q, k, v = _qkv(2, length, 3, 64, seed=length)
    ref = jax.jit(lambda *a: dot_product_attention(*a, backend="xla"))(q, k, v)
    out = jax.jit(lambda *a: splash_attention(*a, block=block, interpret=True))(q, k, v)
    chex.assert_shape(out, (2, length, 3, 64))
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=2e-5, atol=2e-5)
    # the entry point with backend="splash" interprets by itself off-TPU
    out2 = jax.jit(lambda *a: dot_product_attention(*a, backend="splash", splash_block=block))(q, k, v)
    np.testing.assert_allclose(np.asarray(out2), np.asarray(ref), rtol=2e-5, atol=2e-5)


def test_padding_would_matter():
    """Sanity check of the test above: attending to zero-padded keys gives a different answer."""
    q, k, v = _qkv(1, 20, 2, 16)
    pad = lambda x: jnp.pad(x, ((0, 0), (0, 108), (0, 0), (0, 0)))  # noqa: E731
    unmasked = dot_product_attention(q, pad(k), pad(v), backend="xla")
    assert not np.allclose(np.asarray(unmasked), _reference(q, k, v), atol=1e-3)


def test_auto_on_cpu_runs_per_head_and_matches_xla_values_and_grads():
    """``auto`` on CPU lowers the one-head-at-a-time form: same values and gradients as ``xla``."""
    q, k, v = _qkv(2, 37, 3, 16, seed=7)
    auto = jax.jit(lambda *a: dot_product_attention(*a, backend="auto"))
    assert "while" in auto.lower(q, k, v).as_text()  # lax.map over the (batch, head) pairs
    np.testing.assert_allclose(np.asarray(auto(q, k, v)), _reference(q, k, v), rtol=1e-5, atol=1e-5)
    w = jax.random.normal(jax.random.PRNGKey(3), q.shape)

    def grads(backend):
        return jax.jit(jax.grad(lambda *a: jnp.sum(w * dot_product_attention(*a, backend=backend)),
                                argnums=(0, 1, 2)))(q, k, v)

    for a, b in zip(grads("auto"), grads("xla")):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
