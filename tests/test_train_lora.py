"""LoRA: only adapter params train (base frozen, optimizer state holds only LoRA), and the merged weights
reproduce the adapter computation y = x·W + (α/r)·(x·A)·B."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from configs.train_config import LoraConfig, StageConfig
from cogvideox_jax.train import lora as lora_lib
from cogvideox_jax.train.trainer import Trainer
from tests.test_train_loop import tiny_cfg


def test_lora_merge_equals_adapter_forward_on_dense():
    dense = nn.Dense(6)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 5))
    params = {"attn": {"to_q": dense.init(jax.random.PRNGKey(1), x)["params"]}}
    lora = lora_lib.init_lora_params(jax.random.PRNGKey(2), params, rank=2, targets=("to_q",))
    key = "attn/to_q/kernel"
    lora[key]["b"] = jax.random.normal(jax.random.PRNGKey(3), lora[key]["b"].shape)
    scale = lora_lib.lora_scale(2, 4.0)
    merged = lora_lib.merge_lora(params, lora, scale)
    y_merged = dense.apply({"params": merged["attn"]["to_q"]}, x)
    y_adapter = dense.apply({"params": params["attn"]["to_q"]}, x) + scale * (x @ lora[key]["a"]) @ lora[key]["b"]
    np.testing.assert_allclose(y_merged, y_adapter, rtol=1e-5, atol=1e-6)


def test_lora_targets_and_stacked_kernels():
    params = {"blocks": {"attn1": {"to_q": {"kernel": jnp.zeros((4, 8, 2, 3))},      # (layers, D, H, Dh)
                                   "to_out_0": {"kernel": jnp.zeros((4, 2, 3, 8))},  # (layers, H, Dh, D)
                                   "norm_q": {"scale": jnp.zeros((3,))}},
                         "ff": {"kernel": jnp.zeros((4, 8, 8))}}}
    lora = lora_lib.init_lora_params(jax.random.PRNGKey(0), params, 2, ("to_q", "to_out"), stack_axes=1)
    assert set(lora) == {"blocks/attn1/to_q/kernel", "blocks/attn1/to_out_0/kernel"}
    assert lora["blocks/attn1/to_q/kernel"]["a"].shape == (4, 8, 2)
    assert lora["blocks/attn1/to_q/kernel"]["b"].shape == (4, 2, 6)
    assert lora["blocks/attn1/to_out_0/kernel"]["a"].shape == (4, 6, 2)
    assert lora["blocks/attn1/to_out_0/kernel"]["b"].shape == (4, 2, 8)
    merged = lora_lib.merge_lora(params, lora, 0.5)  # B = 0: merge is the identity
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(merged),
                                                     jax.tree_util.tree_leaves(params)))


def test_lora_on_scanned_transformer_targets_stacked_projections(tmp_path):
    cfg = tiny_cfg(lora=LoraConfig(rank=4, alpha=8.0), stages=(StageConfig(steps=1, num_frames=5, height=16, width=16),))
    tr = Trainer(cfg, str(tmp_path))
    tr.build_state()
    lora = jax.device_get(tr.state.params)
    assert sorted(lora) == [f"transformer_blocks/attn1/{n}/kernel" for n in ("to_k", "to_out", "to_q", "to_v")]
    assert lora["transformer_blocks/attn1/to_q/kernel"]["a"].shape == (2, 32, 4)  # (layers, in, rank)
    assert lora["transformer_blocks/attn1/to_out/kernel"]["b"].shape == (2, 4, 32)
    tr.close()


def test_lora_training_changes_only_adapters_and_merge_reproduces_output(tmp_path):
    from configs.transformer import get_preset
    from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D
    from cogvideox_jax.train.model_factory import spec_for_transformer

    cfg = tiny_cfg(lora=LoraConfig(rank=4, alpha=8.0), ema_decay=0.0,
                   stages=(StageConfig(steps=6, num_frames=5, height=16, width=16),))
    # unscanned blocks so the per-layer adapter path below can intercept each projection
    spec = spec_for_transformer(CogVideoXTransformer3D(get_preset("tiny-5b").replace(scan_layers=False)))
    # random init zeroes the adaLN gates, so attention gets no gradient: start from perturbed weights
    from cogvideox_jax.train.model_factory import init_params
    base = jax.device_get(init_params(spec, jax.random.PRNGKey(0), (1, 2, 2, 2, 4), (1, 8, 32)))
    rng = np.random.default_rng(0)
    base = jax.tree_util.tree_map(lambda x: x + 0.05 * rng.standard_normal(x.shape).astype(x.dtype), base)
    tr = Trainer(cfg, str(tmp_path), model_spec=spec, base_params=base)
    tr.build_state()
    base0 = jax.device_get(tr.state.frozen)
    lora0 = jax.device_get(tr.state.params)
    tr.fit()
    tr.close()
    st = tr.state
    # base untouched, every adapter B moved off zero
    for a, b in zip(jax.tree_util.tree_leaves(base0), jax.tree_util.tree_leaves(jax.device_get(st.frozen))):
        np.testing.assert_array_equal(a, b)
    lora1 = jax.device_get(st.params)
    assert set(lora1) == set(lora0) and len(lora1) == 8  # 2 blocks × q, k, v, out
    assert all(k.startswith("transformer_blocks_") for k in lora1)
    assert all(np.abs(lora1[k]["b"]).max() > 0 for k in lora1)
    # optimizer state holds only LoRA-shaped leaves
    n_opt = sum(x.size for x in jax.tree_util.tree_leaves(st.opt_state) if x.ndim > 0)
    assert n_opt == 2 * lora_lib.count_params(lora1)
    # merged weights reproduce the LoRA model's output (adapter path computed per layer by interception)
    scale = tr.lora_scale
    merged = lora_lib.merge_lora(base0, lora1, scale)
    lat = jax.random.normal(jax.random.PRNGKey(0), (2, 2, 4, 4, tr.spec.latent_channels))
    txt = jax.random.normal(jax.random.PRNGKey(1), (2, 8, tr.spec.text_dim))
    ts = jnp.array([10, 900])
    y_merged = tr.spec.module.apply({"params": merged}, lat, txt, ts)

    def adapter(next_fun, args, kwargs, context):
        y = next_fun(*args, **kwargs)
        mod = context.module
        if isinstance(mod, nn.Dense) and context.method_name == "__call__":
            k = "/".join(mod.path) + "/kernel"
            if k in lora1:
                y = y + scale * (args[0] @ lora1[k]["a"]) @ lora1[k]["b"]
        return y

    with nn.intercept_methods(adapter):
        y_lora = tr.spec.module.apply({"params": base0}, lat, txt, ts)
    y_base = tr.spec.module.apply({"params": base0}, lat, txt, ts)
    np.testing.assert_allclose(y_merged, y_lora, rtol=1e-4, atol=1e-5)
    assert float(jnp.abs(y_merged - y_base).max()) > 1e-4
