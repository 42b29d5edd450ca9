"""LoRA files in diffusers / PEFT format (cogvideox_jax.convert.lora_files) against diffusers + PEFT as oracles:
a diffusers-trained LoRA merged here gives diffusers' adapter forward, and a LoRA of ours written here and loaded
by diffusers' own loader gives our merged forward (scanned and unrolled trees)."""
import functools
import os

import jax
import numpy as np
import pytest
from flax import traverse_util

from cogvideox_jax.errors import CheckpointFormatError
from cogvideox_jax.convert.lora_files import (lora_tree_from_file, merge_lora_files, read_lora,
                                              write_diffusers_lora)
from cogvideox_jax.convert.transformer import load_transformer
from cogvideox_jax.train import lora as lora_lib

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft")
from safetensors.numpy import load_file, save_file  # noqa: E402

from cogvideox_jax_oracles.transformer_oracle import make_torch_transformer, reference_forward  # noqa: E402

VARIANT = "5b"
ATTN = ["to_q", "to_k", "to_v", "to_out.0"]
OUR_TARGETS = ("to_q", "to_k", "to_v", "to_out", "proj_in")  # + ff.net.0.proj


def _inputs():
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((1, 2, 4, 6, 4)).astype(np.float32)
    text = rng.standard_normal((1, 7, 24)).astype(np.float32)
    return latents, text, np.array([500], np.int64)


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The base transformer folder, and a LoRA trained the diffusers way (PEFT adapter, r=4, alpha=8,
    saved by the pipeline's save_lora_weights with the adapter metadata) with diffusers' forward."""
    from diffusers import CogVideoXPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    root = tmp_path_factory.mktemp("lora_files")
    model = make_torch_transformer(VARIANT)
    model.save_pretrained(root / "base")
    x = _inputs()
    ref_base = reference_forward(model, *x)
    model.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=ATTN, init_lora_weights=False))
    CogVideoXPipeline.save_lora_weights(root / "diffusers_lora", transformer_lora_layers=get_peft_model_state_dict(model),
                                        transformer_lora_adapter_metadata=model.peft_config["default"].to_dict())
    ref_lora = reference_forward(model, *x)
    return dict(root=root, base=str(root / "base"), lora=str(root / "diffusers_lora"), x=x,
                ref_base=ref_base, ref_lora=ref_lora)


@functools.cache
def _ours(folder, scan):
    module, params = load_transformer(folder, scan_layers=scan)
    fwd = jax.jit(lambda p, a, b, c: module.apply({"params": p}, a, b, c))
    return module, params, lambda p, x: np.asarray(fwd(p, x[0], x[1], x[2].astype(np.float32)))


def _diffusers_forward_with(file, x):
    """A fresh base transformer with ``file`` loaded through diffusers' own CogVideoX loader."""
    from diffusers import CogVideoXPipeline

    model = make_torch_transformer(VARIANT)
    sd, meta = CogVideoXPipeline.lora_state_dict(file, return_lora_metadata=True)
    CogVideoXPipeline.load_lora_into_transformer(sd, transformer=model, metadata=meta)
    return reference_forward(model, *x)


def _random_tree(params, scan, seed=0):
    tree = lora_lib.init_lora_params(jax.random.PRNGKey(seed), params, 4, OUR_TARGETS, stack_axes=int(scan))
    rng = np.random.default_rng(seed)
    return {k: {"a": np.asarray(v["a"]), "b": 0.1 * rng.standard_normal(v["b"].shape).astype(np.float32)}
            for k, v in tree.items()}


@pytest.mark.parametrize("scan", [True, False], ids=["scan", "unrolled"])
def test_diffusers_lora_merges_to_diffusers_forward(setup, scan):
    module, params, fwd = _ours(setup["base"], scan)
    lora = read_lora(setup["lora"])
    assert len(lora) == 2 * 4 and all(s == 2.0 for _, _, s in lora.values())  # alpha 8 / r 4 from the metadata
    snapshot = jax.tree_util.tree_map(np.copy, params)
    merged = merge_lora_files(params, module.config, [(setup["lora"], 1.0)])
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, snapshot)  # input not modified
    np.testing.assert_array_equal(merged["proj_out"]["kernel"], params["proj_out"]["kernel"])
    assert _rel(fwd(params, setup["x"]), setup["ref_base"]) <= 1e-4
    assert _rel(setup["ref_lora"], setup["ref_base"]) > 1e-2
    assert _rel(fwd(merged, setup["x"]), setup["ref_lora"]) <= 1e-4
    # the same file without diffusers' metadata: both sides fall back to alpha = r (scale 1)
    file = os.path.join(setup["lora"], "pytorch_lora_weights.safetensors")
    bare = str(setup["root"] / f"bare_{scan}.safetensors")
    save_file(load_file(file), bare, metadata={"format": "pt"})
    assert all(s == 1.0 for _, _, s in read_lora(bare).values())
    ref_bare = _diffusers_forward_with(bare, setup["x"])
    assert _rel(ref_bare, setup["ref_lora"]) > 1e-3
    assert _rel(fwd(merge_lora_files(params, module.config, [(bare, 1.0)]), setup["x"]), ref_bare) <= 1e-4


@pytest.mark.parametrize("scan", [True, False], ids=["scan", "unrolled"])
def test_our_lora_written_loads_in_diffusers(setup, scan, tmp_path):
    module, params, fwd = _ours(setup["base"], scan)
    tree = _random_tree(params, scan)
    assert len(tree) == (5 if scan else 10)
    scale = lora_lib.lora_scale(4, 8.0)
    file = write_diffusers_lora(tmp_path, tree, scale, module.config)
    assert file == str(tmp_path / "pytorch_lora_weights.safetensors") and os.listdir(tmp_path) == [os.path.basename(file)]
    sd = load_file(file)
    assert sd["transformer.transformer_blocks.1.ff.net.0.proj.lora_A.weight"].shape == (4, 32)
    assert sd["transformer.transformer_blocks.1.attn1.to_out.0.lora_B.weight"].shape == (32, 4)
    ours = fwd(jax.device_get(lora_lib.merge_lora(params, tree, scale)), setup["x"])
    ref = _diffusers_forward_with(file, setup["x"])
    assert _rel(ours, setup["ref_base"]) > 1e-2
    assert _rel(ours, ref) <= 1e-4
    # and read back here: the same merged params as merge_lora
    merged = merge_lora_files(params, module.config, [(file, 1.0)])
    want = jax.device_get(lora_lib.merge_lora(params, tree, scale))
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), merged, want)


def test_old_names_alpha_tensors_bf16_and_peft_folder(setup, tmp_path):
    from peft import LoraConfig, get_peft_model

    new = read_lora(setup["lora"])
    sd = {}
    for mod, (a, b, s) in new.items():  # the older names, alpha as tensors, no metadata
        sd[f"{mod}.lora.down.weight"], sd[f"{mod}.lora.up.weight"] = a, b
        sd[f"{mod}.alpha"] = np.array(s * a.shape[0], np.float32)
    save_file(sd, str(tmp_path / "old.safetensors"))
    old = read_lora(str(tmp_path / "old.safetensors"))
    assert old.keys() == new.keys()
    for mod in new:
        np.testing.assert_array_equal(old[mod][0], new[mod][0])
        np.testing.assert_array_equal(old[mod][1], new[mod][1])
        assert old[mod][2] == new[mod][2] == 2.0
    # bf16 tensors read as float32
    import ml_dtypes

    file = os.path.join(setup["lora"], "pytorch_lora_weights.safetensors")
    half = {k: v.astype(ml_dtypes.bfloat16) for k, v in load_file(file).items()}
    from safetensors import safe_open

    with safe_open(file, "np") as f:
        save_file(half, str(tmp_path / "bf16.safetensors"), metadata=f.metadata())
    bf = read_lora(str(tmp_path / "bf16.safetensors"))
    assert all(bf[m][0].dtype == np.float32 and bf[m][2] == 2.0 for m in bf)
    np.testing.assert_allclose(bf["transformer_blocks.0.attn1.to_q"][1], new["transformer_blocks.0.attn1.to_q"][1],
                               rtol=1e-2, atol=1e-2)
    # PEFT save_pretrained (base_model.model. keys + adapter_config.json) with rslora and an alpha pattern:
    # scales as PEFT computes them
    model = get_peft_model(make_torch_transformer(VARIANT), LoraConfig(
        r=4, lora_alpha=8, target_modules=ATTN, init_lora_weights=False, use_rslora=True,
        alpha_pattern={"transformer_blocks.1.attn1.to_v": 3}))
    model.save_pretrained(str(tmp_path / "peft"))
    assert sorted(os.listdir(tmp_path / "peft")) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    got = read_lora(str(tmp_path / "peft"))
    layers = {n[len("base_model.model."):]: m for n, m in model.named_modules() if hasattr(m, "scaling")}
    assert got.keys() == layers.keys()
    for mod, layer in layers.items():
        np.testing.assert_array_equal(got[mod][0], layer.lora_A["default"].weight.detach().numpy())
        np.testing.assert_array_equal(got[mod][1], layer.lora_B["default"].weight.detach().numpy())
        assert got[mod][2] == pytest.approx(layer.scaling["default"])
    assert got["transformer_blocks.1.attn1.to_v"][2] == pytest.approx(3 / 2)  # alpha 3 / sqrt(4)
    # another component's keys: a clear error naming the file and keys
    save_file({"text_encoder.encoder.block.0.q.lora_A.weight": np.zeros((4, 8), np.float32)},
              str(tmp_path / "te.safetensors"))
    with pytest.raises(CheckpointFormatError, match=r"te\.safetensors.*text_encoder\.encoder\.block\.0\.q"):
        read_lora(str(tmp_path / "te.safetensors"))


@pytest.mark.parametrize("scan", [True, False], ids=["scan", "unrolled"])
def test_lora_tree_from_file_round_trip(setup, scan, tmp_path):
    module, params, _ = _ours(setup["base"], scan)
    tree = _random_tree(params, scan, seed=1)
    file = write_diffusers_lora(str(tmp_path / "mine.safetensors"), tree, 2.0)
    template = lora_lib.init_lora_params(jax.random.PRNGKey(5), params, 4, OUR_TARGETS, stack_axes=int(scan))
    back = lora_tree_from_file(file, template, 0.5)
    assert back.keys() == tree.keys()
    want = jax.device_get(lora_lib.merge_lora(params, tree, 2.0))
    got = jax.device_get(lora_lib.merge_lora(params, back, 0.5))
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, want)
    # the diffusers-made LoRA (attention only): ff entries keep the template (B = 0); same merge as merge_lora_files
    back = lora_tree_from_file(setup["lora"], template, 0.5)
    ff = [k for k in back if "proj_in" in k]
    assert ff and all(not np.any(back[k]["b"]) for k in ff)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                           jax.device_get(lora_lib.merge_lora(params, back, 0.5)),
                           merge_lora_files(params, module.config, [(setup["lora"], 1.0)]))
    small = lora_lib.init_lora_params(jax.random.PRNGKey(5), params, 2, OUR_TARGETS, stack_axes=int(scan))
    with pytest.raises(ValueError, match=r"rank 4, the training LoRA rank 2"):
        lora_tree_from_file(file, small, 0.5)
    only_q = lora_lib.init_lora_params(jax.random.PRNGKey(5), params, 4, ("to_q",), stack_axes=int(scan))
    with pytest.raises(ValueError, match=r"lora\.targets.*transformer_blocks\.0\.attn1\.to_k"):
        lora_tree_from_file(file, only_q, 0.5)


def test_unmatched_modules(setup, tmp_path):
    module, params, _ = _ours(setup["base"], True)
    file = os.path.join(setup["lora"], "pytorch_lora_weights.safetensors")
    sd = load_file(file)
    rng = np.random.default_rng(0)
    extra = {"transformer.transformer_blocks.5.attn1.to_q": (32, 32),   # no such layer
             "transformer.foo.bar": (8, 8),                             # no such module
             "transformer.proj_out": (32, 7)}                           # wrong shape
    for mod, (i, o) in extra.items():
        sd[f"{mod}.lora_A.weight"] = rng.standard_normal((4, i)).astype(np.float32)
        sd[f"{mod}.lora_B.weight"] = rng.standard_normal((o, 4)).astype(np.float32)
    bad = str(tmp_path / "bad.safetensors")
    save_file(sd, bad, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"(?s)^3 LoRA modules(?=.*bad\.safetensors: transformer_blocks\.5\.attn1\.to_q)"
                                         r"(?=.*bad\.safetensors: foo\.bar)(?=.*bad\.safetensors: proj_out \(LoRA in/out \(32, 7\))"):
        merge_lora_files(params, module.config, [(bad, 1.0)])
    with pytest.warns(UserWarning, match="foo.bar"):
        got = merge_lora_files(params, module.config, [(bad, 0.5)], ignore_unmatched=True)
    good = {k: v for k, v in load_file(file).items()}
    save_file(good, str(tmp_path / "good.safetensors"))
    want = merge_lora_files(params, module.config, [(str(tmp_path / "good.safetensors"), 0.5)])
    jax.tree_util.tree_map(np.testing.assert_array_equal, got, want)
    assert not np.array_equal(got["transformer_blocks"]["attn1"]["to_q"]["kernel"],
                              params["transformer_blocks"]["attn1"]["to_q"]["kernel"])


def test_module_name_mapping_round_trips(setup):
    from cogvideox_jax.convert.transformer import diffusers_module_name, module_path

    assert diffusers_module_name(("transformer_blocks", "attn1", "to_out"), 3) == "transformer_blocks.3.attn1.to_out.0"
    assert diffusers_module_name(("transformer_blocks_1", "ff", "proj_in")) == "transformer_blocks.1.ff.net.0.proj"
    assert module_path("transformer_blocks.1.ff.net.2", True) == (("transformer_blocks", "ff", "proj_out"), 1)
    for scan in (True, False):
        _, params, _ = _ours(setup["base"], scan)
        for path, leaf in traverse_util.flatten_dict(params).items():
            if path[-1] == "kernel":
                for i in (range(leaf.shape[0]) if path[0] == "transformer_blocks" else [None]):
                    assert module_path(diffusers_module_name(path[:-1], i), scan) == (path[:-1], i)
