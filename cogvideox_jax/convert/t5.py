"""Torch-free converter: transformers ``T5EncoderModel`` folder (``text_encoder/``) -> ``(module, params)``.

Name mapping (torch -> Flax path, see ``cogvideox_jax/models/t5/t5_encoder.py``):
  shared.weight / encoder.embed_tokens.weight        -> shared/embedding (tied; either or both, equal)
  encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight -> encoder/relative_attention_bias/embedding
  encoder.block.{i}.layer.0.SelfAttention.{q,k,v}.weight (inner, d) -> .../{q,k,v}/kernel (d, heads, kv)
  encoder.block.{i}.layer.0.SelfAttention.o.weight   (d, inner)    -> .../o/kernel (heads, kv, d)
  encoder.block.{i}.layer.{j}.layer_norm.weight                    -> .../layer_norm/scale
  encoder.block.{i}.layer.1.DenseReluDense.{wi_0,wi_1,wi,wo}.weight -> .../kernel (transposed)
  encoder.final_layer_norm.weight                                  -> encoder/final_layer_norm/scale
Decoder weights (a full ``T5ForConditionalGeneration`` checkpoint) are ignored, as transformers
does for ``T5EncoderModel``. Everything else is checked strictly by ``assemble_params``.
"""
from __future__ import annotations

import re
from typing import Mapping

import jax.numpy as jnp
import numpy as np

from configs.t5 import T5Config
from cogvideox_jax.errors import CheckpointFormatError
from cogvideox_jax.convert.safetensors_io import read_config, read_folder
from cogvideox_jax.convert.tree_check import abstract_params, assemble_params

_RELPOS = re.compile(r"^encoder\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias\.weight$")
_ATTN = re.compile(r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.([qkvo])\.weight$")
_NORM = re.compile(r"^encoder\.block\.(\d+)\.layer\.([01])\.layer_norm\.weight$")
_FF = re.compile(r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.(wi_0|wi_1|wi|wo)\.weight$")
_EMBED_NAMES = ("shared.weight", "encoder.embed_tokens.weight")


def t5_config_from_folder(folder: str) -> T5Config:
    config = read_config(folder)
    archs = config.get("architectures") or []
    if config.get("model_type") not in (None, "t5") and "T5EncoderModel" not in archs:
        raise CheckpointFormatError(f"{folder!r} is not a T5 folder: model_type={config.get('model_type')!r}")
    try:
        return T5Config.from_hf_config(config)
    except (TypeError, ValueError) as e:
        raise CheckpointFormatError(f"invalid T5 config.json in {folder!r}: {e}") from e


def convert_t5_state_dict(state: Mapping[str, np.ndarray], config: T5Config):
    """``{torch_name: array}`` -> (``{path_tuple: array}``, unused torch names)."""
    heads, d_kv = config.num_heads, config.d_kv
    converted: dict[tuple[str, ...], np.ndarray] = {}
    unused: list[str] = []
    embeds = [n for n in _EMBED_NAMES if n in state]
    if embeds:
        first = np.asarray(state[embeds[0]])
        for other in embeds[1:]:
            o = np.asarray(state[other])
            if o.shape != first.shape or not np.array_equal(o, first):
                raise CheckpointFormatError(
                    f"untied embeddings: {embeds[0]} and {other} differ; T5EncoderModel ties them"
                )
        converted[("shared", "embedding")] = first
    for name, arr in state.items():
        if name in _EMBED_NAMES:
            continue
        if name.startswith("decoder.") or name == "lm_head.weight":
            continue  # T5EncoderModel ignores the decoder of a full T5 checkpoint
        arr = np.asarray(arr)
        if _RELPOS.match(name):
            converted[("encoder", "relative_attention_bias", "embedding")] = arr
        elif m := _ATTN.match(name):
            i, proj = m.groups()
            prefix = ("encoder", f"block_{i}", "layer_0", "SelfAttention", proj, "kernel")
            if arr.ndim != 2:
                unused.append(name)
                continue
            if proj == "o":
                converted[prefix] = arr.T.reshape(heads, d_kv, arr.shape[0]) if arr.shape[1] == heads * d_kv else arr.T
            else:
                converted[prefix] = arr.T.reshape(arr.shape[1], heads, d_kv) if arr.shape[0] == heads * d_kv else arr.T
        elif m := _NORM.match(name):
            i, j = m.groups()
            converted[("encoder", f"block_{i}", f"layer_{j}", "layer_norm", "scale")] = arr
        elif m := _FF.match(name):
            i, w = m.groups()
            converted[("encoder", f"block_{i}", "layer_1", "DenseReluDense", w, "kernel")] = arr.T
        elif name == "encoder.final_layer_norm.weight":
            converted[("encoder", "final_layer_norm", "scale")] = arr
        else:
            unused.append(name)
    return converted, unused


def load_t5(folder: str, dtype=jnp.float32, param_dtype=jnp.float32, config_overrides: Mapping | None = None):
    """Load a transformers T5 encoder folder: returns ``(T5EncoderModel module, params)``.

    Reads ``config.json`` and ``model.safetensors`` (or a sharded ``model.safetensors.index.json``).
    Raises ``WeightMismatchError`` naming missing / unexpected / mis-shaped keys.
    """
    from cogvideox_jax.models.t5.t5_encoder import T5EncoderModel

    cfg = t5_config_from_folder(folder)
    if config_overrides:
        cfg = cfg.replace(**config_overrides)
    module = T5EncoderModel(cfg, dtype=dtype, param_dtype=param_dtype)
    state = read_folder(folder)
    converted, unused = convert_t5_state_dict(state, cfg)
    expected = abstract_params(module, jnp.zeros((1, 2), jnp.int32))
    params = assemble_params(converted, expected, unused_source_keys=unused, context=f"T5 {folder}", dtype=param_dtype)
    return module, params
