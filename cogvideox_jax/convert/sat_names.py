"""Original SAT (SwissArmyTransformer) CogVideoX checkpoints -> diffusers names, in numpy.

The renaming follows the official conversion (CogVideo ``convert_weight_sat2hf`` / diffusers
``convert_cogvideox_to_diffusers``): ordered substring replacements, then special keys - the fused
``query_key_value`` split into q/k/v, the 12-way ``adaLN_modulations`` split into the two
LayerNormZero linears, per-layer QK LayerNorms, and the decoder's up-block index reversed.
The result feeds the same diffusers-name -> Flax mapping as a diffusers folder.
"""
from __future__ import annotations

import numpy as np

SAT_PREFIX = "model.diffusion_model."

# Order matters: "transformer.final_layernorm" must be renamed before "transformer".
TRANSFORMER_RENAMES: tuple[tuple[str, str], ...] = (
    ("transformer.final_layernorm", "norm_final"),
    ("transformer", "transformer_blocks"),
    ("attention", "attn1"),
    ("mlp", "ff.net"),
    ("dense_h_to_4h", "0.proj"),
    ("dense_4h_to_h", "2"),
    (".layers", ""),
    ("dense", "to_out.0"),
    ("input_layernorm", "norm1.norm"),
    ("post_attn1_layernorm", "norm2.norm"),
    ("time_embed.0", "time_embedding.linear_1"),
    ("time_embed.2", "time_embedding.linear_2"),
    ("ofs_embed.0", "ofs_embedding.linear_1"),
    ("ofs_embed.2", "ofs_embedding.linear_2"),
    ("mixins.patch_embed", "patch_embed"),
    ("mixins.final_layer.norm_final", "norm_out.norm"),
    ("mixins.final_layer.linear", "proj_out"),
    ("mixins.final_layer.adaLN_modulation.1", "norm_out.linear"),
    ("mixins.pos_embed.pos_embedding", "patch_embed.pos_embedding"),
)
# Buffers / unused weights in SAT checkpoints.
TRANSFORMER_DROPPED = ("embed_tokens", "freqs_sin", "freqs_cos", "position_embedding")

VAE_RENAMES: tuple[tuple[str, str], ...] = (
    ("block.", "resnets."),
    ("down.", "down_blocks."),
    ("downsample", "downsamplers.0"),
    ("upsample", "upsamplers.0"),
    ("nin_shortcut", "conv_shortcut"),
    ("encoder.mid.block_1", "encoder.mid_block.resnets.0"),
    ("encoder.mid.block_2", "encoder.mid_block.resnets.1"),
    ("decoder.mid.block_1", "decoder.mid_block.resnets.0"),
    ("decoder.mid.block_2", "decoder.mid_block.resnets.1"),
)


def _rename(key: str, renames) -> str:
    for old, new in renames:
        key = key.replace(old, new)
    return key


def unwrap_state_dict(saved: dict) -> dict:
    """SAT / DeepSpeed checkpoints nest the weights under ``module`` / ``model`` / ``state_dict``."""
    for wrapper in ("model", "module", "state_dict"):
        if isinstance(saved, dict) and wrapper in saved and isinstance(saved[wrapper], dict):
            saved = saved[wrapper]
    return saved


def sat_transformer_to_diffusers(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename a SAT transformer state dict to diffusers ``CogVideoXTransformer3DModel`` names."""
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        name = key[len(SAT_PREFIX):] if key.startswith(SAT_PREFIX) else key
        name = _rename(name, TRANSFORMER_RENAMES)
        if any(d in name for d in TRANSFORMER_DROPPED):
            continue
        if "query_key_value" in name:
            for part, chunk in zip(("to_q", "to_k", "to_v"), np.split(np.asarray(value), 3, axis=0)):
                out[name.replace("query_key_value", part)] = chunk
        elif "query_layernorm_list" in name or "key_layernorm_list" in name:
            layer, which = name.split(".")[-2:]
            norm = "norm_q" if "query_layernorm_list" in name else "norm_k"
            out[f"transformer_blocks.{layer}.attn1.{norm}.{which}"] = value
        elif "adaln_layer.adaLN_modulations" in name:
            layer, _, which = name.split(".")[-3:]
            chunks = np.split(np.asarray(value), 12, axis=0)
            out[f"transformer_blocks.{layer}.norm1.linear.{which}"] = np.concatenate(chunks[0:3] + chunks[6:9])
            out[f"transformer_blocks.{layer}.norm2.linear.{which}"] = np.concatenate(chunks[3:6] + chunks[9:12])
        else:
            out[name] = value
    return out


def sat_vae_to_diffusers(state: dict[str, np.ndarray], num_up_blocks: int = 4) -> dict[str, np.ndarray]:
    """Rename a SAT VAE state dict to diffusers ``AutoencoderKLCogVideoX`` names."""
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if key.startswith("loss.") or ".loss." in key:
            continue
        name = _rename(key, VAE_RENAMES)
        if name.startswith("decoder.up."):
            parts = name.split(".")
            parts[1], parts[2] = "up_blocks", str(num_up_blocks - 1 - int(parts[2]))
            name = ".".join(parts)
        out[name] = value
    return out


def load_torch_checkpoint(path: str) -> dict[str, np.ndarray]:
    """Read a ``.pt`` / ``.safetensors`` checkpoint into numpy (torch imported lazily, only here)."""
    if path.endswith(".safetensors"):
        from cogvideox_jax.convert.safetensors_io import read_safetensors

        return read_safetensors(path)
    import torch  # noqa: PLC0415 - the SAT converter is the one place torch is allowed

    saved = unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=False, mmap=True))
    out = {}
    for k, v in saved.items():
        if hasattr(v, "detach"):
            t = v.detach()
            out[k] = t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()
    return out
