"""Load a transformers ``CLIPModel`` folder (config.json + safetensors) into ``clip_jax.CLIPModel``.

Torch-free (``convert.safetensors_io``), strict (``convert.tree_check.assemble_params``: every
missing, unexpected or mis-shaped tensor is named).
"""
from __future__ import annotations

import re

import jax.numpy as jnp
import numpy as np

from cogvideox_jax.convert.safetensors_io import read_config, read_folder
from cogvideox_jax.convert.tree_check import abstract_params, assemble_params
from cogvideox_jax.eval.vbench.backends.clip_jax import CLIPConfig, CLIPModel, clip_config_from_json

_IGNORED = re.compile(r".*position_ids$")
_LAYER = re.compile(r"^(text_model|vision_model)\.encoder\.layers\.(\d+)\.(.+)$")
_LINEAR_LEAF = {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2", "visual_projection", "text_projection"}
_NORM_LEAF = {"layer_norm1", "layer_norm2", "pre_layrnorm", "post_layernorm", "final_layer_norm"}


def _map_leaf(module_path: tuple[str, ...], leaf: str, value: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    mod = module_path[-1]
    if mod in _LINEAR_LEAF:
        return (module_path + ("kernel",), value.T) if leaf == "weight" else (module_path + ("bias",), value)
    if mod in _NORM_LEAF:
        return (module_path + ("scale",), value) if leaf == "weight" else (module_path + ("bias",), value)
    if mod in ("token_embedding", "position_embedding") and leaf == "weight":
        return module_path + ("embedding",), value
    if mod == "patch_embedding" and leaf == "weight":  # (D, C, p, p) -> (p, p, C, D)
        return module_path + ("kernel",), value.transpose(2, 3, 1, 0)
    raise KeyError(".".join(module_path + (leaf,)))


def convert_clip_state_dict(state: dict[str, np.ndarray]) -> tuple[dict, list[str]]:
    """transformers names -> flat ``{path_tuple: array}`` for ``CLIPModel``; returns unused names."""
    out, unused = {}, []
    for name, value in state.items():
        if _IGNORED.match(name):
            continue
        value = np.asarray(value)
        try:
            if name == "logit_scale":
                out[("logit_scale",)] = value.reshape(())
                continue
            if name == "vision_model.embeddings.class_embedding":
                out[("vision_model", "class_embedding")] = value
                continue
            m = _LAYER.match(name)
            if m:
                tower, idx, rest = m.groups()
                parts = rest.split(".")
                if parts[0] == "mlp":  # mlp.fc1.weight -> fc1 directly under the layer
                    parts = parts[1:]
                path = (tower, "encoder", f"layers_{idx}", *parts[:-1])
                key, val = _map_leaf(path, parts[-1], value)
            else:
                parts = [p for p in name.split(".") if p != "embeddings"]
                key, val = _map_leaf(tuple(parts[:-1]), parts[-1], value)
        except KeyError:
            unused.append(name)
            continue
        out[key] = val
    return out, unused


def load_clip(folder: str, dtype=jnp.float32) -> tuple[CLIPModel, dict, CLIPConfig]:
    """``(module, params, config)`` from a transformers CLIP folder (e.g. openai/clip-vit-base-patch32)."""
    cfg = clip_config_from_json(read_config(folder))
    module = CLIPModel(cfg, dtype=dtype)
    ids = jnp.zeros((1, 4), jnp.int32)
    pix = jnp.zeros((1, cfg.image_size, cfg.image_size, cfg.num_channels), jnp.float32)
    expected = abstract_params(module, ids, pix)
    converted, unused = convert_clip_state_dict(read_folder(folder))
    params = assemble_params(converted, expected, unused_source_keys=unused, context=f"CLIP from {folder}")
    return module, params, cfg
