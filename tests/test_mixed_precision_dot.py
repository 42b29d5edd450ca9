"""bf16-operand matmuls with fp32 accumulation (``TransformerConfig.matmul_dtype``): the forward and
both backward matmuls use bf16-rounded operands and fp32 results, and a transformer run with them
stays close to the fp32 one in values and gradients."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.transformer import get_preset
from cogvideox_jax.models.mixed_precision_dot import dense_dot_general
from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D
from tests.test_transformer_execution import _inputs, _random_params


def _bf16(x):
    """``x`` rounded to bf16, as float64 (the exact products a bf16 x bf16 -> fp32 dot sums)."""
    return np.asarray(jnp.asarray(x).astype(jnp.bfloat16).astype(jnp.float32), np.float64)


def test_dense_dot_rounds_operands_to_bf16_forward_and_backward():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 5, 48)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((48, 24)), jnp.float32)
    g = jnp.asarray(rng.standard_normal((2, 5, 24)), jnp.float32)  # the output's cotangent
    dot = dense_dot_general("bfloat16")
    dims = (((2,), (0,)), ((), ()))
    out, vjp = jax.vjp(lambda a, b: dot(a, b, dims), x, w)
    dx, dw = vjp(g)
    assert out.dtype == dx.dtype == dw.dtype == jnp.float32
    xb, wb, gb = _bf16(x), _bf16(w), _bf16(g)
    # fp32 accumulation of the bf16-rounded operands' exact products
    np.testing.assert_allclose(np.asarray(out), xb @ wb, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(dx), gb @ wb.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(dw), np.einsum("bsk,bsn->kn", xb, gb), rtol=1e-5, atol=1e-5)
    # ... which differ from the fp32 products by bf16 rounding (2^-9 relative per operand)
    x64, w64, g64 = (np.asarray(a, np.float64) for a in (x, w, g))
    for got, exact in ((out, x64 @ w64), (dx, g64 @ w64.T), (dw, np.einsum("bsk,bsn->kn", x64, g64))):
        err = np.abs(np.asarray(got) - exact).max() / np.abs(exact).max()
        assert 1e-5 < err < 2e-2, err


def test_dense_dot_leaves_other_contractions_and_float32_alone():
    assert dense_dot_general("float32") is None  # Flax's own lax.dot_general
    with pytest.raises(ValueError, match="matmul_dtype"):
        dense_dot_general("float16")
    with pytest.raises(ValueError, match="matmul_dtype"):
        get_preset("tiny-5b").replace(matmul_dtype="fp8")
    a = jnp.asarray(np.random.default_rng(1).standard_normal((3, 4, 5)), jnp.float32)
    batched = (((2,), (2,)), ((0,), (0,)))  # not a Dense contraction: computed as asked, in fp32
    np.testing.assert_array_equal(np.asarray(dense_dot_general("bfloat16")(a, a, batched)),
                                  np.asarray(jax.lax.dot_general(a, a, batched)))


def _low_precision_dots(jaxpr) -> int:
    """dot_generals of the jaxpr (nested ones included) with bf16 operands and an fp32 result."""
    n = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            if all(v.aval.dtype == jnp.bfloat16 for v in eqn.invars) and eqn.outvars[0].aval.dtype == jnp.float32:
                n += 1
        for sub in jax.core.jaxprs_in_params(eqn.params):
            n += _low_precision_dots(sub)
    return n


def test_transformer_with_bf16_matmuls_is_close_to_fp32_and_uses_them_in_the_backward():
    cfg = get_preset("tiny-5b").replace(num_layers=2, scan_layers=False)
    fp32 = CogVideoXTransformer3D(cfg)
    mixed = CogVideoXTransformer3D(cfg.replace(matmul_dtype="bfloat16"))
    params = _random_params(fp32)
    x = _inputs(cfg)

    def loss(module):
        return lambda p: jnp.mean(module.apply({"params": p}, *x) ** 2)

    (l32, g32), (l16, g16) = (jax.jit(jax.value_and_grad(loss(m)))(params) for m in (fp32, mixed))
    out32, out16 = (jax.jit(m.apply)({"params": params}, *x) for m in (fp32, mixed))
    rel = float(jnp.abs(out16 - out32).max() / jnp.abs(out32).max())
    assert 1e-5 < rel < 3e-2, rel  # really computed differently, and close
    assert abs(float(l16) / float(l32) - 1) < 3e-2
    for a, b in zip(jax.tree.leaves(g32), jax.tree.leaves(g16)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=0.05 * float(jnp.abs(a).max()) + 1e-6)
    # per block: q, k, v, out and the two feed-forward matmuls, each once forward and twice backward
    jaxpr = jax.make_jaxpr(jax.value_and_grad(loss(mixed)))(params).jaxpr
    assert _low_precision_dots(jaxpr) == cfg.num_layers * 6 * 3
    assert _low_precision_dots(jax.make_jaxpr(jax.value_and_grad(loss(fp32)))(params).jaxpr) == 0
    # same parameters either way: a checkpoint trained with one runs with the other
    assert jax.tree.structure(nn.unbox(mixed.init(jax.random.PRNGKey(0), *x)["params"])) == jax.tree.structure(params)
