"""Test helper: build a SAT-named state dict from a diffusers one (the inverse of the documented
renaming), so the SAT converter can be checked without real SAT checkpoints."""
from __future__ import annotations

import re

import numpy as np

INVERSE_TRANSFORMER = (
    ("norm_final", "transformer.final_layernorm"),
    ("time_embedding.linear_1", "time_embed.0"),
    ("time_embedding.linear_2", "time_embed.2"),
    ("ofs_embedding.linear_1", "ofs_embed.0"),
    ("ofs_embedding.linear_2", "ofs_embed.2"),
    ("patch_embed.pos_embedding", "mixins.pos_embed.pos_embedding"),
    ("patch_embed", "mixins.patch_embed"),
    ("norm_out.norm", "mixins.final_layer.norm_final"),
    ("proj_out", "mixins.final_layer.linear"),
    ("norm_out.linear", "mixins.final_layer.adaLN_modulation.1"),
)


def diffusers_transformer_to_sat(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    pre = "model.diffusion_model."
    blocks: dict[int, dict[str, np.ndarray]] = {}
    for key, v in sd.items():
        m = re.match(r"transformer_blocks\.(\d+)\.(.*)", key)
        if m:
            blocks.setdefault(int(m.group(1)), {})[m.group(2)] = v
            continue
        name = key
        for new, old in INVERSE_TRANSFORMER:
            if name.startswith(new):
                name = old + name[len(new):]
                break
        out[pre + name] = v
    for i, b in blocks.items():
        layer = f"{pre}transformer.layers.{i}."
        for w in ("weight", "bias"):
            out[f"{layer}attention.query_key_value.{w}"] = np.concatenate(
                [b[f"attn1.to_q.{w}"], b[f"attn1.to_k.{w}"], b[f"attn1.to_v.{w}"]], axis=0)
            out[f"{layer}attention.dense.{w}"] = b[f"attn1.to_out.0.{w}"]
            out[f"{layer}mlp.dense_h_to_4h.{w}"] = b[f"ff.net.0.proj.{w}"]
            out[f"{layer}mlp.dense_4h_to_h.{w}"] = b[f"ff.net.2.{w}"]
            out[f"{layer}input_layernorm.{w}"] = b[f"norm1.norm.{w}"]
            out[f"{layer}post_attn1_layernorm.{w}"] = b[f"norm2.norm.{w}"]
            out[f"{pre}mixins.adaln_layer.query_layernorm_list.{i}.{w}"] = b[f"attn1.norm_q.{w}"]
            out[f"{pre}mixins.adaln_layer.key_layernorm_list.{i}.{w}"] = b[f"attn1.norm_k.{w}"]
            n1 = np.split(b[f"norm1.linear.{w}"], 6, axis=0)
            n2 = np.split(b[f"norm2.linear.{w}"], 6, axis=0)
            out[f"{pre}mixins.adaln_layer.adaLN_modulations.{i}.1.{w}"] = np.concatenate(
                n1[0:3] + n2[0:3] + n1[3:6] + n2[3:6], axis=0)
    # buffers SAT checkpoints carry and the converter must drop
    out[pre + "mixins.pos_embed.freqs_sin"] = np.zeros((4, 4), np.float32)
    out[pre + "mixins.pos_embed.freqs_cos"] = np.zeros((4, 4), np.float32)
    return out


def diffusers_vae_to_sat(sd: dict[str, np.ndarray], num_up_blocks: int = 4) -> dict[str, np.ndarray]:
    out = {}
    for key, v in sd.items():
        name = key
        m = re.match(r"decoder\.up_blocks\.(\d+)\.(.*)", name)
        if m:
            name = f"decoder.up.{num_up_blocks - 1 - int(m.group(1))}.{m.group(2)}"
        name = re.sub(r"mid_block\.resnets\.(\d)", lambda mm: f"mid.block_{int(mm.group(1)) + 1}", name)
        name = (name.replace("down_blocks.", "down.").replace("resnets.", "block.")
                .replace("downsamplers.0", "downsample").replace("upsamplers.0", "upsample")
                .replace("conv_shortcut", "nin_shortcut"))
        out[name] = v
    out["loss.logvar"] = np.zeros((), np.float32)
    return out
