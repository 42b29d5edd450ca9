"""Our params -> PyTorch state dicts with diffusers / transformers names (numpy, torch-free), so a
converted checkpoint can be written back as a diffusers pipeline folder (``cogvideox-jax export``).

Each function is the exact inverse of the component's loader mapping; ``tests/test_cli.py`` checks
convert -> export -> reload equals the original weights bit for bit.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np
from flax import traverse_util

# inverse of the VAE loader's (OIDHW -> DHWIO, OIHW -> HWIO, (out,in) -> (in,out)) layouts
_INVERSE_LAYOUTS = {5: (4, 3, 0, 1, 2), 4: (3, 2, 0, 1), 2: (1, 0)}


def _np(x):
    return np.asarray(x)


def vae_state_dict(params) -> dict[str, np.ndarray]:
    """VAE params -> ``AutoencoderKLCogVideoX`` state dict."""
    out = {}
    for path, value in traverse_util.flatten_dict(params).items():
        *prefix, leaf = path
        name = ".".join(re.sub(r"_(\d+)$", r".\1", p) for p in prefix)
        value = _np(value)
        if leaf == "kernel":
            out[f"{name}.weight"] = np.ascontiguousarray(np.transpose(value, _INVERSE_LAYOUTS[value.ndim]))
        elif leaf == "scale":
            out[f"{name}.weight"] = value
        else:
            out[f"{name}.{leaf}"] = value
    return out


def t5_state_dict(params, config) -> dict[str, np.ndarray]:
    """T5 encoder params -> transformers ``T5EncoderModel`` state dict (tied embeddings written twice)."""
    heads, d_kv = config.num_heads, config.d_kv
    out = {}
    for path, value in traverse_util.flatten_dict(params).items():
        value = _np(value)
        if path == ("shared", "embedding"):
            out["shared.weight"] = value
            out["encoder.embed_tokens.weight"] = value
        elif path == ("encoder", "relative_attention_bias", "embedding"):
            out["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = value
        elif path == ("encoder", "final_layer_norm", "scale"):
            out["encoder.final_layer_norm.weight"] = value
        elif path[-2] == "layer_norm":
            i, j = path[1].split("_")[1], path[2].split("_")[1]
            out[f"encoder.block.{i}.layer.{j}.layer_norm.weight"] = value
        elif path[3] == "SelfAttention":
            i, proj = path[1].split("_")[1], path[4]
            w = value.reshape(heads * d_kv, -1) if proj == "o" else value.reshape(value.shape[0], heads * d_kv)
            out[f"encoder.block.{i}.layer.0.SelfAttention.{proj}.weight"] = np.ascontiguousarray(w.T)
        elif path[3] == "DenseReluDense":
            i, w = path[1].split("_")[1], path[4]
            out[f"encoder.block.{i}.layer.1.DenseReluDense.{w}.weight"] = np.ascontiguousarray(value.T)
        else:
            raise KeyError(f"no T5 export rule for {'/'.join(path)}")
    return out


def write_component(folder: str, state: dict[str, np.ndarray], config: dict, weights_name: str) -> None:
    """Write ``config.json`` + one safetensors file (diffusers / transformers layout)."""
    from safetensors.numpy import save_file

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, os.path.join(folder, weights_name),
              metadata={"format": "pt"})
