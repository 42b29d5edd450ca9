"""Layer scan vs unrolled blocks, remat policies vs none (values and gradients), export round trip."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from configs.transformer import get_preset
from cogvideox_jax.convert.transformer import convert_transformer_state_dict, transformer_state_dict
from cogvideox_jax.convert.tree_check import abstract_params, assemble_params
from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D, dummy_inputs

CFG = get_preset("tiny-5b").replace(num_layers=2)


def _inputs(cfg, t=2, h=4, w=6):
    rng = np.random.default_rng(0)
    return (jnp.asarray(rng.standard_normal((2, t, h, w, cfg.in_channels)), jnp.float32),
            jnp.asarray(rng.standard_normal((2, cfg.max_text_seq_length, cfg.text_embed_dim)), jnp.float32),
            jnp.asarray([999.0, 3.0]))


def _random_params(module, seed=1):
    """Init, then perturb every leaf (zero-initialised AdaLN/out layers would hide bugs)."""
    params = module.init(jax.random.PRNGKey(0), *dummy_inputs(module.config))["params"]
    params = jax.tree.map(lambda x: x.unbox() if hasattr(x, "unbox") else x, params,
                          is_leaf=lambda x: hasattr(x, "unbox"))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree.unflatten(tree, [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def _relayout(params, src_cfg, dst_module):
    """Our params -> diffusers names -> the other layout, through the converter (strict)."""
    state = transformer_state_dict(params, src_cfg)
    converted, unused = convert_transformer_state_dict(state, dst_module.config)
    expected = abstract_params(dst_module, *dummy_inputs(dst_module.config))
    return assemble_params(converted, expected, unused_source_keys=unused, context="relayout")


def test_scan_equals_unrolled_and_export_round_trips():
    unrolled = CogVideoXTransformer3D(CFG.replace(scan_layers=False))
    scanned = CogVideoXTransformer3D(CFG.replace(scan_layers=True))
    p_unrolled = _random_params(unrolled)
    p_scanned = _relayout(p_unrolled, unrolled.config, scanned)
    stacked = traverse_util.flatten_dict(p_scanned)
    chex.assert_shape(stacked[("transformer_blocks", "attn1", "to_q", "kernel")], (2, CFG.inner_dim, CFG.inner_dim))
    # export of either layout gives the same diffusers state dict
    a, b = transformer_state_dict(p_unrolled, unrolled.config), transformer_state_dict(p_scanned, scanned.config)
    assert sorted(a) == sorted(b) and "transformer_blocks.1.ff.net.0.proj.weight" in a
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    x = _inputs(CFG)
    out_u = jax.jit(unrolled.apply)({"params": p_unrolled}, *x)
    out_s = jax.jit(scanned.apply)({"params": p_scanned}, *x)
    chex.assert_shape(out_u, (2, 2, 4, 6, CFG.out_dim))
    np.testing.assert_allclose(np.asarray(out_s), np.asarray(out_u), rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def no_remat_reference():
    base = CogVideoXTransformer3D(CFG)
    params = _random_params(base)
    return params, jax.jit(jax.value_and_grad(_loss(base)))(params)


def _loss(module):
    x = _inputs(CFG)
    return lambda p: jnp.sum(module.apply({"params": p}, *x) ** 2)


@pytest.mark.parametrize("policy", ["dots_saveable", pytest.param("full", marks=pytest.mark.slow),
                                    pytest.param("nothing_saveable", marks=pytest.mark.slow)])
def test_remat_matches_no_remat(policy, no_remat_reference):
    params, (v0, g0) = no_remat_reference
    remat = CogVideoXTransformer3D(CFG.replace(remat_policy=policy))
    v1, g1 = jax.jit(jax.value_and_grad(_loss(remat)))(params)
    np.testing.assert_allclose(float(v1), float(v0), rtol=1e-6)
    for (path, a), b in zip(traverse_util.flatten_dict(g0).items(), traverse_util.flatten_dict(g1).values()):
        assert np.max(np.abs(np.asarray(a))) > 0, path
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-5 * float(np.max(np.abs(a))),
                                   err_msg=str(path))


def test_params_carry_logical_axes():
    module = CogVideoXTransformer3D(CFG)
    boxed = jax.eval_shape(module.init, jax.random.PRNGKey(0), *dummy_inputs(CFG))["params"]
    flat = traverse_util.flatten_dict(boxed)
    assert flat, "no params"
    for path, leaf in flat.items():
        assert hasattr(leaf, "names"), path
        assert len(leaf.names) == len(leaf.value.shape), path
        if path[0] == "transformer_blocks":
            assert leaf.names[0] == "layers", path
