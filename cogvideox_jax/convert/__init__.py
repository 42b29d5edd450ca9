"""Torch-free converters from PyTorch checkpoints (diffusers / transformers folders, SAT)."""
from __future__ import annotations

from cogvideox_jax.errors import CheckpointFormatError, WeightMismatchError
from cogvideox_jax.convert.safetensors_io import read_config


def load_diffusers(folder: str, **kwargs):
    """Load a diffusers / transformers component folder into ``(module, params)``.

    The component is recognised from ``config.json``:
      * ``AutoencoderKLCogVideoX``      -> the 3D causal VAE (``vae/``)
      * ``CogVideoXTransformer3DModel`` -> the expert transformer (``transformer/``)
      * ``T5EncoderModel`` / ``t5``     -> the T5 v1.1 text encoder (``text_encoder/``)

    Keyword arguments are passed to the component loader (e.g. ``dtype``, ``param_dtype``).
    """
    config = read_config(folder)
    class_name = config.get("_class_name")
    architectures = config.get("architectures") or []
    if class_name == "AutoencoderKLCogVideoX":
        from cogvideox_jax.convert.vae import load_vae

        return load_vae(folder, **kwargs)
    if class_name == "CogVideoXTransformer3DModel":
        from cogvideox_jax.convert.transformer import load_transformer

        return load_transformer(folder, **kwargs)
    if "T5EncoderModel" in architectures or config.get("model_type") in ("t5", "umt5"):
        from cogvideox_jax.convert.t5 import load_t5

        return load_t5(folder, **kwargs)
    raise CheckpointFormatError(
        f"{folder!r}: unsupported component (config _class_name={class_name!r}, "
        f"architectures={architectures}); expected a CogVideoX vae/, transformer/ or text_encoder/ folder"
    )


__all__ = ["load_diffusers", "CheckpointFormatError", "WeightMismatchError"]
