"""The attention entry point: backends agree with a plain softmax reference."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cogvideox_jax.models.attention import dot_product_attention, resolve_backend


def _qkv(b=2, length=200, h=2, d=64, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(rng.standard_normal((b, length, h, d)), jnp.float32) for _ in range(3))


def _reference(q, k, v):
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    s = np.einsum("blhd,bmhd->bhlm", q, k) / np.sqrt(q.shape[-1])
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhlm,bmhd->blhd", p, v)


def test_xla_matches_reference():
    q, k, v = _qkv()
    out = dot_product_attention(q, k, v, backend="xla")
    chex.assert_shape(out, q.shape)
    np.testing.assert_allclose(np.asarray(out), _reference(q, k, v), atol=2e-5)


def test_splash_interpret_matches_xla_with_padding():
    # 200 tokens is not a block multiple: padded to 256 and masked with segment ids
    q, k, v = _qkv(b=1, length=200, h=2, d=64)
    xla = dot_product_attention(q, k, v, backend="xla")
    splash = jax.jit(lambda a, b, c: dot_product_attention(a, b, c, backend="splash", splash_block=128,
                                                           interpret=True))(q, k, v)
    chex.assert_shape(splash, q.shape)
    np.testing.assert_allclose(np.asarray(splash), np.asarray(xla), atol=2e-5)


def test_auto_picks_by_platform_and_rejects_unknown():
    expected = {"cpu": "xla", "tpu": "splash"}.get(jax.devices()[0].platform)
    if expected:
        assert resolve_backend("auto", jnp.bfloat16) == expected
    assert resolve_backend("auto", jnp.float32) in ("xla", "splash")
    with pytest.raises(ValueError, match="unknown attention backend"):
        dot_product_attention(*_qkv(length=8), backend="flash")
