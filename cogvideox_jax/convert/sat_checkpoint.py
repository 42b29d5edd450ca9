"""``cogvideox-jax convert --sat``: original SAT checkpoints -> the pipeline's components.

The SAT release ships the transformer (``.../mp_rank_00_model_states.pt``) and the VAE (``.pt`` or
``.safetensors``); the T5 encoder and tokenizer are the standard transformers folders. Weights are
renamed to diffusers names (``sat_names.py``) and then go through the same strict diffusers-name ->
Flax mapping as a diffusers folder. torch is imported lazily, only to read ``.pt`` files.
"""
from __future__ import annotations

import dataclasses
import glob
import os

import jax.numpy as jnp

from configs import transformer as transformer_configs
from configs import vae as vae_configs
from configs.scheduler import COGVIDEOX_2B, COGVIDEOX_5B
from cogvideox_jax.errors import CheckpointFormatError
from cogvideox_jax.convert.safetensors_io import read_config
from cogvideox_jax.convert.sat_names import load_torch_checkpoint, sat_transformer_to_diffusers, sat_vae_to_diffusers
from cogvideox_jax.convert.transformer import transformer_params_from_state
from cogvideox_jax.convert.tree_check import abstract_params, assemble_params
from cogvideox_jax.convert.vae import convert_vae_state_dict

VARIANT_PRESETS = {  # --variant -> (transformer preset, VAE preset, scheduler)
    "2b": ("cogvideox-2b", "cogvideox-2b", COGVIDEOX_2B),
    "5b": ("cogvideox-5b", "cogvideox-5b", COGVIDEOX_5B),
    "5b-i2v": ("cogvideox-5b-i2v", "cogvideox-5b-i2v", COGVIDEOX_5B),
    "1.5": ("cogvideox1.5-5b", "cogvideox1.5-5b", COGVIDEOX_5B),
    "1.5-i2v": ("cogvideox1.5-5b-i2v", "cogvideox1.5-5b-i2v", COGVIDEOX_5B),
}


def find_transformer_file(path: str) -> str:
    if os.path.isfile(path):
        return path
    found = sorted(glob.glob(os.path.join(path, "**", "mp_rank_00_model_states.pt"), recursive=True))
    if not found:
        raise CheckpointFormatError(f"no mp_rank_00_model_states.pt under {path!r} (pass the SAT checkpoint folder)")
    return found[-1]


def transformer_from_sat_state(state, cfg, param_dtype=jnp.float32):
    from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D

    module = CogVideoXTransformer3D(cfg, param_dtype=param_dtype)
    return module, transformer_params_from_state(sat_transformer_to_diffusers(state), module, "SAT transformer",
                                                 param_dtype)


def vae_from_sat_state(state, cfg, param_dtype=jnp.float32):
    from cogvideox_jax.models.vae.autoencoder import AutoencoderKLCogVideoX

    module = AutoencoderKLCogVideoX(cfg, param_dtype=param_dtype)
    converted, unused = convert_vae_state_dict(sat_vae_to_diffusers(state, len(cfg.block_out_channels)))
    s = cfg.spatial_compression
    expected = abstract_params(module, jnp.zeros((1, 1, s, s, cfg.in_channels)))
    return module, assemble_params(converted, expected, unused_source_keys=unused, context="SAT VAE",
                                   dtype=param_dtype)


def load_sat_components(sat: str, sat_vae: str, variant: str, text_encoder: str, tokenizer: str, *,
                        scan_layers: bool = True, param_dtype=jnp.float32) -> dict:
    """The SAT transformer (folder or ``mp_rank_00_model_states.pt``) and VAE of ``variant``
    (``VARIANT_PRESETS``) with a diffusers T5 folder and tokenizer folder, as the keyword arguments of
    ``pipeline.components.PipelineComponents``."""
    from cogvideox_jax.convert.t5 import load_t5
    from cogvideox_jax.models.t5.prompt_encoding import load_tokenizer

    t_name, v_name, scheduler = VARIANT_PRESETS[variant]
    tcfg = transformer_configs.get_preset(t_name).replace(scan_layers=scan_layers)
    vcfg = vae_configs.get_preset(v_name)
    transformer, t_params = transformer_from_sat_state(load_torch_checkpoint(find_transformer_file(sat)), tcfg,
                                                       param_dtype)
    vae, v_params = vae_from_sat_state(load_torch_checkpoint(sat_vae), vcfg, param_dtype)
    t5, t5_params = load_t5(text_encoder, param_dtype=param_dtype)
    vae_json = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(vcfg).items()}
    return dict(transformer=transformer, transformer_params=t_params, vae=vae, vae_params=v_params,
                text_encoder=t5, text_encoder_params=t5_params, tokenizer=load_tokenizer(tokenizer),
                tokenizer_dir=tokenizer, scheduler_config=scheduler,
                source_configs={"transformer": tcfg.to_diffusers_config(),
                                "vae": {"_class_name": "AutoencoderKLCogVideoX", **vae_json},
                                "text_encoder": read_config(text_encoder)})
