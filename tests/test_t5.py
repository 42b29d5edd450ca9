"""T5 v1.1 encoder vs transformers ``T5EncoderModel`` (random init, tiny configs, real oracle)."""
import json
import os

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from configs.t5 import T5_V1_1_XXL, T5Config, get_preset  # noqa: E402
from cogvideox_jax.convert import WeightMismatchError, load_diffusers  # noqa: E402
from cogvideox_jax.errors import CheckpointFormatError  # noqa: E402
from cogvideox_jax.convert.t5 import convert_t5_state_dict, load_t5  # noqa: E402
from cogvideox_jax.models.t5 import T5EncoderModel, encode_prompts, encode_prompts_jit  # noqa: E402
from cogvideox_jax.models.t5.relative_position_bias import relative_position_bucket  # noqa: E402
from cogvideox_jax.parallel.logical_axes import LOGICAL_AXIS_RULES  # noqa: E402

# length 48 > max_distance 20 so the far (clamped) buckets are exercised.
TINY_HF = dict(
    vocab_size=128, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
    relative_attention_num_buckets=16, relative_attention_max_distance=20,
    feed_forward_proj="gated-gelu", dropout_rate=0.0, layer_norm_epsilon=1e-6,
)
LENGTH = 48


def _hf_model(**overrides):
    from transformers import T5Config as HFT5Config, T5EncoderModel as HFT5EncoderModel

    torch.manual_seed(0)
    model = HFT5EncoderModel(HFT5Config(**{**TINY_HF, **overrides})).eval()
    # T5's default init gives a near-zero relative bias; make it O(1) so positions matter.
    with torch.no_grad():
        model.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight.normal_(0.0, 1.0)
    return model


def _ids(batch=2, length=LENGTH, vocab=128, seed=0):
    """Prompt-like ids: tokens, then EOS (1), then padding (0); rows of different lengths."""
    rng = np.random.RandomState(seed)
    ids = np.zeros((batch, length), np.int64)
    for b, n in enumerate([length - 9, 13][:batch] + [20] * max(0, batch - 2)):
        ids[b, :n] = rng.randint(3, vocab, size=n)
        ids[b, n] = 1
    return ids


def _reference(model, ids, mask=None):
    with torch.no_grad():
        kw = {} if mask is None else {"attention_mask": torch.tensor(mask)}
        return model(torch.tensor(ids), **kw).last_hidden_state.float().numpy()


def _rel_err(out, ref):
    return float(np.max(np.abs(np.asarray(out, np.float32) - ref)) / np.max(np.abs(ref)))


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    model = _hf_model()
    folder = str(tmp_path_factory.mktemp("t5") / "text_encoder")
    model.save_pretrained(folder, safe_serialization=True)
    return model, folder


@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (16, 20), (8, 16), (64, 256)])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_position_bucket_matches_transformers(num_buckets, max_distance, bidirectional):
    from transformers.models.t5.modeling_t5 import T5Attention

    rel = np.arange(-700, 701)
    ref = T5Attention._relative_position_bucket(
        torch.tensor(rel), bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance
    ).numpy()
    ours = relative_position_bucket(rel, bidirectional, num_buckets, max_distance)
    np.testing.assert_array_equal(ours, ref)
    assert ours.min() >= 0 and ours.max() == num_buckets - 1  # far buckets reached


def test_parity_vs_transformers_no_mask(tiny_folder):
    model, folder = tiny_folder
    ids = _ids()
    ref = _reference(model, ids)
    module, params = load_diffusers(folder)
    assert isinstance(module, T5EncoderModel)
    assert module.config.relative_attention_max_distance == 20 and module.config.is_gated_act
    out = module.apply({"params": params}, ids)
    chex.assert_shape(out, (2, LENGTH, 32))
    chex.assert_type(out, jnp.float32)
    assert _rel_err(out, ref) <= 1e-4
    # padding is attended to (no mask): the output at real tokens depends on the padding ids
    ids2 = ids.copy()
    ids2[1, 30:] = 5
    assert _rel_err(module.apply({"params": params}, ids2)[1, :13], ref[1, :13]) > 1e-3


def test_parity_vs_transformers_with_attention_mask(tiny_folder):
    model, folder = tiny_folder
    ids = _ids()
    mask = (np.cumsum(ids[:, ::-1] == 1, axis=1)[:, ::-1] > 0).astype(np.int64)  # tokens + EOS
    ref = _reference(model, ids, mask)
    module, params = load_t5(folder)
    out = module.apply({"params": params}, ids, mask)
    assert _rel_err(out, ref) <= 1e-4
    assert _rel_err(out, _reference(model, ids)) > 1e-3  # the mask matters


def test_parity_relu_non_gated(tmp_path):
    model = _hf_model(feed_forward_proj="relu", num_layers=3)
    model.save_pretrained(tmp_path, safe_serialization=True)
    module, params = load_t5(str(tmp_path))
    assert not module.config.is_gated_act and module.config.num_layers == 3
    ids = _ids(seed=1)
    assert _rel_err(module.apply({"params": params}, ids), _reference(model, ids)) <= 1e-4


def test_sharded_checkpoint_loads(tiny_folder, tmp_path):
    model, folder = tiny_folder
    model.save_pretrained(tmp_path, safe_serialization=True, max_shard_size="20KB")
    assert os.path.exists(tmp_path / "model.safetensors.index.json")
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".safetensors")]) > 1
    module, params = load_diffusers(str(tmp_path))
    ids = _ids()
    _, params_single = load_t5(folder)
    chex.assert_trees_all_equal(params, params_single)
    assert _rel_err(module.apply({"params": params}, ids), _reference(model, ids)) <= 1e-4


def test_more_layers_than_checkpoint_is_an_error(tiny_folder, tmp_path):
    _, folder = tiny_folder
    for name in os.listdir(folder):
        if name != "config.json":
            os.symlink(os.path.join(folder, name), tmp_path / name)
    config = json.load(open(os.path.join(folder, "config.json")))
    config["num_layers"] = 3
    json.dump(config, open(tmp_path / "config.json", "w"))
    with pytest.raises(WeightMismatchError) as e:
        load_t5(str(tmp_path))
    assert "encoder/block_2/layer_0/SelfAttention/q/kernel" in str(e.value)
    assert "encoder/block_2/layer_1/DenseReluDense/wo/kernel" in e.value.missing
    # fewer layers than the checkpoint: the extra ones are unexpected
    with pytest.raises(WeightMismatchError) as e:
        load_t5(folder, config_overrides={"num_layers": 1})
    assert "encoder/block_1/layer_0/SelfAttention/k/kernel" in e.value.unexpected
    # a different width: shape mismatches are named
    with pytest.raises(WeightMismatchError) as e:
        load_t5(folder, config_overrides={"d_ff": 64})
    assert any("wi_0/kernel" in m for m in e.value.shape_mismatches)


def test_tied_embedding_names(tiny_folder):
    model, _ = tiny_folder
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    cfg = T5Config.from_hf_config(model.config.to_dict())
    shared = state.pop("shared.weight", None)
    if shared is None:
        shared = state.pop("encoder.embed_tokens.weight")
    state.pop("encoder.embed_tokens.weight", None)
    for names in (["shared.weight"], ["encoder.embed_tokens.weight"], ["shared.weight", "encoder.embed_tokens.weight"]):
        converted, unused = convert_t5_state_dict({**state, **{n: shared for n in names}}, cfg)
        assert not unused
        np.testing.assert_array_equal(converted[("shared", "embedding")], shared)
    with pytest.raises(CheckpointFormatError, match="untied"):
        convert_t5_state_dict({**state, "shared.weight": shared, "encoder.embed_tokens.weight": shared + 1}, cfg)
    # decoder weights of a full T5 checkpoint are ignored, unknown encoder keys are reported
    converted, unused = convert_t5_state_dict(
        {**state, "shared.weight": shared, "decoder.block.0.layer.0.SelfAttention.q.weight": shared,
         "encoder.block.0.layer.0.SelfAttention.q.bias": shared[0]}, cfg)
    assert unused == ["encoder.block.0.layer.0.SelfAttention.q.bias"]


def test_bf16_close_to_fp32(tiny_folder):
    model, folder = tiny_folder
    ids = _ids()
    module32, params32 = load_t5(folder)
    ref32 = np.asarray(module32.apply({"params": params32}, ids))
    module, params = load_t5(folder, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    chex.assert_trees_all_equal_dtypes(params, jax.tree_util.tree_map(lambda x: np.zeros((), jnp.bfloat16), params))
    out = encode_prompts_jit(module, params, ids)
    chex.assert_type(out, jnp.bfloat16)
    assert bool(jnp.all(jnp.isfinite(out)))
    err = _rel_err(out, ref32)
    assert err < 3e-2, err
    # compute in bf16 with fp32 params also stays close
    module_mixed, params_mixed = load_t5(folder, dtype=jnp.bfloat16)
    assert _rel_err(module_mixed.apply({"params": params_mixed}, ids), ref32) < 3e-2


def test_encode_prompts_jit_matches_apply(tiny_folder):
    _, folder = tiny_folder
    module, params = load_t5(folder)
    ids = _ids().astype(np.int32)
    a = encode_prompts(module, params, ids)
    b = encode_prompts_jit(module, params, ids)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_params_carry_known_logical_axes():
    module = T5EncoderModel(get_preset("tiny"))
    variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))
    known = {name for name, _ in LOGICAL_AXIS_RULES}
    flat = traverse_util.flatten_dict(variables["params"])
    assert flat
    for path, boxed in flat.items():
        assert isinstance(boxed, nn.Partitioned), path
        assert len(boxed.names) == len(boxed.value.shape), path
        assert set(boxed.names) <= known, (path, boxed.names)
    names = {p[-2]: b.names for p, b in flat.items()}
    assert names["shared"] == ("vocab", "embed")
    assert names["q"] == ("embed", "heads", "kv") and names["o"] == ("heads", "kv", "embed")
    assert names["wi_0"] == ("embed", "mlp") and names["wo"] == ("mlp", "embed")
    assert names["relative_attention_bias"] == ("relpos_buckets", "heads")


def test_config_from_hf_and_xxl_preset():
    from transformers import T5Config as HFT5Config

    hf = HFT5Config(d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64, vocab_size=32128,
                    feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6).to_dict()
    hf["some_unknown_key"] = 1
    cfg = T5Config.from_hf_config(hf)
    assert cfg == T5_V1_1_XXL
    assert cfg.dense_act_fn == "gelu_new" and cfg.is_gated_act and cfg.inner_dim == 4096
    with pytest.raises(ValueError):
        T5Config(feed_forward_proj="gated-swishy")
    xxl = jax.eval_shape(
        T5EncoderModel(T5_V1_1_XXL, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16).init,
        jax.random.PRNGKey(0), jnp.zeros((1, 226), jnp.int32))
    n = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(nn.unbox(xxl["params"])))
    assert n == 4_762_310_656  # T5 v1.1 XXL encoder (4.76 B params, as transformers counts it)


def test_heads_dense_is_dense_general():
    """``HeadsDense``: same param shape, init values (the flat draw reshaped) and outputs as ``nn.DenseGeneral``."""
    from cogvideox_jax.models.t5.t5_layers import _DEFAULT_KERNEL_INIT, HeadsDense

    x = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 32))
    for feats, axis, names, inp in (((4, 8), (-1,), ("embed", "heads", "kv"), x),
                                    ((32,), (-2, -1), ("heads", "kv", "embed"), x.reshape(2, 5, 4, 8))):
        ours = HeadsDense(feats, axis, names)
        ref = nn.DenseGeneral(feats, axis=axis, use_bias=False, kernel_init=_DEFAULT_KERNEL_INIT)
        p = nn.unbox(ours.init(jax.random.PRNGKey(0), inp))
        q = ref.init(jax.random.PRNGKey(0), inp)
        np.testing.assert_array_equal(p["params"]["kernel"], q["params"]["kernel"])
        np.testing.assert_array_equal(ours.apply(p, inp), ref.apply(q, inp))
