"""Torch-free converter: diffusers ``AutoencoderKLCogVideoX`` folder -> ``(module, params)``.

Names map mechanically: ``down_blocks.0.resnets.1.conv1.conv.weight`` ->
``('encoder', 'down_blocks_0', 'resnets_1', 'conv1', 'conv', 'kernel')`` (a numeric segment joins
the previous one); ``weight`` becomes ``kernel`` (conv OIDHW -> DHWIO, OIHW -> HWIO, linear
transposed) or ``scale`` (norms). The result is checked strictly against the module's abstract
params (missing / unexpected / shape mismatch -> ``WeightMismatchError``).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from configs.vae import VAEConfig
from cogvideox_jax.errors import CheckpointFormatError
from cogvideox_jax.convert.safetensors_io import read_config, read_folder
from cogvideox_jax.convert.tree_check import abstract_params, assemble_params

_LAYOUTS = {5: (2, 3, 4, 1, 0), 4: (2, 3, 1, 0), 2: (1, 0)}


def torch_name_to_path(name: str) -> tuple[str, ...]:
    parts = name.split(".")
    out: list[str] = []
    for p in parts[:-1]:
        if p.isdigit() and out:
            out[-1] = f"{out[-1]}_{p}"
        else:
            out.append(p)
    leaf = parts[-1]
    return tuple(out), leaf


def convert_vae_state_dict(state: Mapping[str, np.ndarray]):
    """``{torch_name: array}`` -> (``{path_tuple: array}``, unused torch names)."""
    converted, unused = {}, []
    for name, arr in state.items():
        prefix, leaf = torch_name_to_path(name)
        arr = np.asarray(arr)
        if leaf == "weight":
            if arr.ndim in _LAYOUTS:
                converted[prefix + ("kernel",)] = np.transpose(arr, _LAYOUTS[arr.ndim])
            elif arr.ndim == 1:
                converted[prefix + ("scale",)] = arr
            else:
                unused.append(name)
        elif leaf == "bias":
            converted[prefix + ("bias",)] = arr
        else:
            unused.append(name)
    return converted, unused


def vae_config_from_folder(folder: str) -> VAEConfig:
    config = read_config(folder)
    if config.get("_class_name") not in (None, "AutoencoderKLCogVideoX"):
        raise CheckpointFormatError(f"{folder!r} is not an AutoencoderKLCogVideoX folder: {config.get('_class_name')}")
    try:
        return VAEConfig.from_diffusers_config(config)
    except (TypeError, ValueError) as e:
        raise CheckpointFormatError(f"invalid VAE config.json in {folder!r}: {e}") from e


# The modules each half of the VAE uses (top-level param names; the quant convs are 1x1x1 convs).
VAE_PARTS = {"encoder": ("encoder", "quant_conv"), "decoder": ("decoder", "post_quant_conv")}


def load_vae(folder: str, dtype=jnp.float32, param_dtype=jnp.float32, config_overrides: Mapping | None = None,
             parts: Sequence[str] = ("encoder", "decoder")):
    """Load a diffusers VAE folder: returns ``(AutoencoderKLCogVideoX module, params)``.

    ``parts=("decoder",)`` loads only the weights ``decode`` uses (``("encoder",)``: ``encode``), e.g.
    for text-to-video sampling, which never encodes; the other half's tensors are not read.
    """
    from cogvideox_jax.models.vae.autoencoder import AutoencoderKLCogVideoX

    cfg = vae_config_from_folder(folder)
    if config_overrides:
        cfg = cfg.replace(**config_overrides)
    module = AutoencoderKLCogVideoX(cfg, dtype=dtype, param_dtype=param_dtype)
    parts = (parts,) if isinstance(parts, str) else tuple(parts)
    unknown = set(parts) - set(VAE_PARTS)
    if unknown or not parts:
        raise ValueError(f"parts must be a non-empty subset of {sorted(VAE_PARTS)}, got {parts!r}")
    modules = [m for part in parts for m in VAE_PARTS[part]]
    source = read_folder(folder)
    if set(parts) != set(VAE_PARTS):  # a whole load keeps every name, so stray tensors are reported
        source = source.only(m + "." for m in modules)
    converted, unused = convert_vae_state_dict(source)
    s = cfg.spatial_compression
    dummy = jnp.zeros((1, 1, s, s, cfg.in_channels), jnp.float32)
    expected = {k: v for k, v in abstract_params(module, dummy).items() if k in modules}
    params = assemble_params(
        converted, expected, unused_source_keys=unused, context=f"VAE {folder}", dtype=param_dtype
    )
    return module, params
