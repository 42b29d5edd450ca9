"""Torch-free converter: diffusers ``CogVideoXTransformer3DModel`` folder <-> ``(module, params)``.

diffusers names map to our tree as follows (per block ``transformer_blocks.{i}``; with
``scan_layers`` the blocks are stacked on a leading axis under ``transformer_blocks``):
``norm{1,2}.linear`` -> ``norm{1,2}/linear``, ``norm{1,2}.norm`` -> ``norm{1,2}/norm``,
``attn1.to_{q,k,v}`` / ``attn1.to_out.0`` -> ``attn1/to_{q,k,v,out}``, ``attn1.norm_{q,k}``,
``ff.net.0.proj`` -> ``ff/proj_in``, ``ff.net.2`` -> ``ff/proj_out``; the 1.0 patch conv
``patch_embed.proj`` (OIHW) -> ``patch_embed/proj_kernel`` (HWIO) + ``proj_bias``; the learned
``patch_embed.pos_embedding`` (1, L, D) -> ``pos_embedding`` (L, D). Linear weights are transposed.
"""
from __future__ import annotations

import re
from typing import Mapping

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from configs.transformer import TransformerConfig
from cogvideox_jax.convert.errors import CheckpointFormatError
from cogvideox_jax.convert.host_arrays import aligned_empty, copy_into
from cogvideox_jax.convert.safetensors_io import read_config, read_folder
from cogvideox_jax.convert.tree_check import abstract_params, assemble_params

_BLOCK_RENAMES = {
    "attn1.to_out.0": "attn1.to_out",
    "ff.net.0.proj": "ff.proj_in",
    "ff.net.2": "ff.proj_out",
}
_BLOCK = re.compile(r"^transformer_blocks\.(\d+)\.(.+)\.(weight|bias)$")


def _leaf(module_path: tuple[str, ...], kind: str, arr: np.ndarray):
    """(path, array) for a weight/bias of a Linear or LayerNorm."""
    if kind == "bias":
        return module_path + ("bias",), arr
    if arr.ndim == 2:
        return module_path + ("kernel",), arr.T
    return module_path + ("scale",), arr


def convert_transformer_state_dict(state: Mapping[str, np.ndarray], cfg: TransformerConfig):
    """``{diffusers name: array}`` -> (``{path_tuple: array}``, unused names).

    With ``scan_layers`` each block weight is copied straight into its slot of the stacked
    (aligned) array as it is read, so the source tensors are never all held next to the stack.
    """
    out: dict[tuple[str, ...], np.ndarray] = {}
    stacks: dict[tuple[str, ...], np.ndarray] = {}
    filled: dict[tuple[str, ...], set[int]] = {}
    unused = []
    n = cfg.num_layers
    for name, arr in state.items():
        arr = np.asarray(arr)
        if m := _BLOCK.match(name):
            i, mod, kind = int(m.group(1)), m.group(2), m.group(3)
            mod = _BLOCK_RENAMES.get(mod, mod)
            path, value = _leaf(tuple(mod.split(".")), kind, arr)
            if not cfg.scan_layers:
                out[(f"transformer_blocks_{i}",) + path] = value
                continue
            if i >= n:
                unused.append(name)
                continue
            if path not in stacks:
                stacks[path], filled[path] = aligned_empty((n,) + value.shape, value.dtype), set()
            if stacks[path].shape[1:] != value.shape:
                unused.append(f"{name} (shape {value.shape}, other layers {stacks[path].shape[1:]})")
                continue
            copy_into(stacks[path][i], value)
            filled[path].add(i)
        elif name == "patch_embed.proj.weight" and arr.ndim == 4:
            out[("patch_embed", "proj_kernel")] = arr.transpose(2, 3, 1, 0)
        elif name == "patch_embed.proj.bias" and cfg.patch_size_t is None:
            out[("patch_embed", "proj_bias")] = arr
        elif name == "patch_embed.pos_embedding":
            if cfg.use_learned_positional_embeddings:
                out[("pos_embedding",)] = arr.reshape(arr.shape[-2], arr.shape[-1])
            else:
                unused.append(name)
        elif m := re.match(r"^(.+)\.(weight|bias)$", name):
            mod, kind = m.groups()
            path, value = _leaf(tuple(mod.split(".")), kind, arr)
            out[path] = value
        else:
            unused.append(name)
    for path, stack in stacks.items():
        if len(filled[path]) == n:
            out[("transformer_blocks",) + path] = stack
        else:
            unused.extend(f"(incomplete stack) transformer_blocks.{i}/{'/'.join(path)}"
                          for i in range(n) if i not in filled[path])
    return out, unused


def transformer_config_from_folder(folder: str, **overrides) -> TransformerConfig:
    config = read_config(folder)
    if config.get("_class_name") not in (None, "CogVideoXTransformer3DModel"):
        raise CheckpointFormatError(f"{folder!r} is not a CogVideoXTransformer3DModel folder")
    try:
        return TransformerConfig.from_diffusers_config({**config, **overrides})
    except (TypeError, ValueError) as e:
        raise CheckpointFormatError(f"invalid transformer config.json in {folder!r}: {e}") from e


def transformer_params_from_state(state, module, context: str, param_dtype=jnp.float32):
    from cogvideox_jax.models.transformer.transformer_3d import dummy_inputs

    converted, unused = convert_transformer_state_dict(state, module.config)
    expected = abstract_params(module, *dummy_inputs(module.config),
                               **({"ofs": jnp.zeros((1,))} if module.config.ofs_embed_dim else {}))
    return assemble_params(converted, expected, unused_source_keys=unused, context=context, dtype=param_dtype)


def load_transformer(folder: str, dtype=jnp.float32, param_dtype=jnp.float32, scan_layers: bool | None = None,
                     config_overrides: Mapping | None = None, mesh=None):
    """Load a diffusers transformer folder: returns ``(CogVideoXTransformer3D, params)``."""
    from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D

    overrides = dict(config_overrides or {})
    if scan_layers is not None:
        overrides["scan_layers"] = scan_layers
    cfg = transformer_config_from_folder(folder, **overrides)
    module = CogVideoXTransformer3D(cfg, dtype=dtype, param_dtype=param_dtype, mesh=mesh)
    params = transformer_params_from_state(read_folder(folder), module, f"transformer {folder}", param_dtype)
    return module, params


def transformer_state_dict(params, cfg: TransformerConfig) -> dict[str, np.ndarray]:
    """The inverse: our params (scanned or unrolled) -> diffusers state dict (numpy)."""
    inverse = {v: k for k, v in _BLOCK_RENAMES.items()}
    out = {}
    for path, value in traverse_util.flatten_dict(params).items():
        value = np.asarray(value)
        if path[0] == "transformer_blocks":  # scanned: unstack
            items = [((f"transformer_blocks_{i}",) + path[1:], value[i]) for i in range(value.shape[0])]
        else:
            items = [(path, value)]
        for p, v in items:
            if p == ("patch_embed", "proj_kernel"):
                out["patch_embed.proj.weight"] = np.ascontiguousarray(v.transpose(3, 2, 0, 1))
                continue
            if p == ("patch_embed", "proj_bias"):
                out["patch_embed.proj.bias"] = v
                continue
            if p == ("pos_embedding",):
                out["patch_embed.pos_embedding"] = v[None]
                continue
            *mod, leaf = p
            if mod[0].startswith("transformer_blocks_"):
                i = mod[0].split("_")[-1]
                inner = ".".join(mod[1:])
                mod = ["transformer_blocks", i, inverse.get(inner, inner)]
            name = ".".join(mod)
            if leaf == "kernel":
                out[f"{name}.weight"] = np.ascontiguousarray(v.T)
            elif leaf == "scale":
                out[f"{name}.weight"] = v
            else:
                out[f"{name}.bias"] = v
    return out
