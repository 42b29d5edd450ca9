"""Execution options of the expert transformer: layer scan vs unrolled, every remat policy (values
and gradients), splash attention through the whole model, logical axis names on every param."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from configs.transformer import REMAT_POLICIES, get_preset
from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D, dummy_inputs
from cogvideox_jax.parallel.logical_axes import LOGICAL_AXIS_RULES

CFG = get_preset("tiny-5b").replace(num_layers=3)


def _inputs(cfg, t=2, h=4, w=6, batch=2):
    rng = np.random.default_rng(0)
    return (jnp.asarray(rng.standard_normal((batch, t, h, w, cfg.in_channels)), jnp.float32),
            jnp.asarray(rng.standard_normal((batch, cfg.max_text_seq_length, cfg.text_embed_dim)), jnp.float32),
            jnp.asarray([999.0, 3.0][:batch]))


def _unbox(tree):
    return jax.tree.map(lambda x: x.unbox() if isinstance(x, nn.meta.AxisMetadata) else x, tree,
                        is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata))


def _random_params(module, seed=1):
    """Init, then perturb every leaf (the zero-initialised AdaLN / proj_out would hide differences)."""
    params = _unbox(module.init(jax.random.PRNGKey(0), *dummy_inputs(module.config))["params"])
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree.unflatten(tree, [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def _stack_unrolled(params, num_layers):
    """``transformer_blocks_{i}`` subtrees -> one ``transformer_blocks`` tree stacked on axis 0."""
    blocks = [params[f"transformer_blocks_{i}"] for i in range(num_layers)]
    rest = {k: v for k, v in params.items() if not k.startswith("transformer_blocks_")}
    return {**rest, "transformer_blocks": jax.tree.map(lambda *xs: jnp.stack(xs), *blocks)}


def test_scan_equals_unrolled():
    unrolled = CogVideoXTransformer3D(CFG.replace(scan_layers=False))
    scanned = CogVideoXTransformer3D(CFG.replace(scan_layers=True))
    p_unrolled = _random_params(unrolled)
    p_scanned = _stack_unrolled(p_unrolled, CFG.num_layers)
    expected = jax.eval_shape(lambda: _unbox(scanned.init(jax.random.PRNGKey(0), *dummy_inputs(CFG))["params"]))
    chex.assert_trees_all_equal_shapes_and_dtypes(p_scanned, expected)
    x = _inputs(CFG)
    out_u = jax.jit(unrolled.apply)({"params": p_unrolled}, *x)
    out_s = jax.jit(scanned.apply)({"params": p_scanned}, *x)
    chex.assert_shape(out_u, (2, 2, 4, 6, CFG.out_dim))
    assert float(jnp.std(out_u)) > 1e-2  # a real, non-degenerate output
    np.testing.assert_allclose(np.asarray(out_s), np.asarray(out_u), rtol=1e-6, atol=1e-6)
    # and the layers really differ: swapping two stacked layers changes the output
    swapped = dict(p_scanned, transformer_blocks=jax.tree.map(lambda a: a[::-1], p_scanned["transformer_blocks"]))
    assert not np.allclose(np.asarray(jax.jit(scanned.apply)({"params": swapped}, *x)), np.asarray(out_u), atol=1e-4)


@pytest.mark.parametrize("scan", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["scan", "unrolled"])
def test_every_remat_policy_matches_no_remat(scan):
    """Values and gradients of a scalar loss are equal with and without remat, for every policy."""
    base = CogVideoXTransformer3D(CFG.replace(scan_layers=scan, num_layers=2))
    params = _random_params(base)
    x = _inputs(base.config)

    def value_and_grad(module):
        return jax.jit(jax.value_and_grad(lambda p: jnp.mean(module.apply({"params": p}, *x) ** 2)))(params)

    v0, g0 = value_and_grad(base)
    g0 = traverse_util.flatten_dict(g0)
    assert all(np.max(np.abs(np.asarray(a))) > 0 for a in g0.values())
    for policy in REMAT_POLICIES:
        if policy == "none":
            continue
        v1, g1 = value_and_grad(CogVideoXTransformer3D(base.config.replace(remat_policy=policy)))
        np.testing.assert_allclose(float(v1), float(v0), rtol=1e-6, err_msg=policy)
        g1 = traverse_util.flatten_dict(g1)
        assert g1.keys() == g0.keys()
        for path, a in g0.items():
            a, b = np.asarray(a), np.asarray(g1[path])
            scale = float(np.max(np.abs(a)))
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6 * scale, err_msg=f"{policy} {path}")


def test_splash_backend_through_the_model_matches_xla():
    """The whole tiny model with splash attention (Pallas interpret mode on CPU) == XLA attention;
    the joint sequence (8 text + 2*2*3 video = 20 tokens) is far from a multiple of 128."""
    xla = CogVideoXTransformer3D(CFG.replace(attention_backend="xla", num_layers=2))
    splash = CogVideoXTransformer3D(CFG.replace(attention_backend="splash", num_layers=2))
    params = _random_params(xla)
    x = _inputs(xla.config)
    out_x = jax.jit(xla.apply)({"params": params}, *x)
    out_s = jax.jit(splash.apply)({"params": params}, *x)
    np.testing.assert_allclose(np.asarray(out_s), np.asarray(out_x), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("preset,extra", [
    ("tiny-5b", {}),
    ("tiny-2b", dict(scan_layers=False)),
    ("tiny-5b", dict(patch_size_t=2, patch_bias=False, sample_frames=17, in_channels=8, ofs_embed_dim=16)),
    ("tiny-5b", dict(use_learned_positional_embeddings=True, in_channels=8)),
], ids=["5b-scan", "2b-unrolled", "1.5-i2v", "5b-i2v"])
def test_every_param_has_logical_axis_names_from_the_rules_table(preset, extra):
    cfg = get_preset(preset).replace(**extra)
    module = CogVideoXTransformer3D(cfg)
    ofs = jnp.ones((1,)) if cfg.ofs_embed_dim else None
    boxed = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *dummy_inputs(cfg), ofs=ofs))["params"]
    specs = traverse_util.flatten_dict(nn.get_partition_spec(boxed))
    shapes = traverse_util.flatten_dict(_unbox(boxed))
    assert specs.keys() == shapes.keys() and len(specs) > 20
    known = {name for name, _ in LOGICAL_AXIS_RULES}
    allowed_unnamed = {("pos_embedding",): 0}  # the learned table's token axis is replicated on purpose
    for path, spec in specs.items():
        assert isinstance(spec, jax.sharding.PartitionSpec), path
        assert len(spec) == len(shapes[path].shape), (path, spec, shapes[path].shape)
        for i, name in enumerate(spec):
            if name is None and allowed_unnamed.get(path) == i:
                continue
            assert name in known, (path, spec)
        if path[0] == "transformer_blocks" and cfg.scan_layers:
            assert spec[0] == "layers", (path, spec)
