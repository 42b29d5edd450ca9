"""Prompt tokenization and T5 encoding exactly as diffusers' CogVideoX ``_get_t5_prompt_embeds``.

The pipeline pads every prompt to ``max_sequence_length`` (226) with ``<pad>`` (id 0), appends
``</s>`` (truncating the text so that ``</s>`` stays the last real token) and runs the encoder
WITHOUT an attention mask, i.e. the padding tokens are attended to. The negative prompt is the
empty string (``[</s>, <pad>, ...]``).

transformers is imported lazily (only ``load_tokenizer`` needs it); ``tokenize_prompts`` accepts
any transformers tokenizer object.
"""
from __future__ import annotations

import logging
import warnings
from typing import Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_MAX_SEQUENCE_LENGTH = 226


class PromptTruncatedWarning(UserWarning):
    """A prompt was longer than ``max_length`` tokens and its tail was dropped."""


def load_tokenizer(tokenizer_dir: str):
    """``AutoTokenizer.from_pretrained(tokenizer_dir)`` (a CogVideoX ``tokenizer/`` folder)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


def tokenize_prompts(
    tokenizer, prompts: Union[str, Sequence[str]], max_length: int = DEFAULT_MAX_SEQUENCE_LENGTH
) -> np.ndarray:
    """Token ids ``(B, max_length)`` int32: padded / truncated to ``max_length``, ending in EOS.

    Warns (``PromptTruncatedWarning``, and a log warning like diffusers) naming the removed text
    when a prompt is truncated.
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    ids = tokenizer(
        prompts,
        padding="max_length",
        max_length=max_length,
        truncation=True,
        add_special_tokens=True,
        return_tensors="np",
    ).input_ids
    untruncated = tokenizer(prompts, padding="longest", return_tensors="np").input_ids
    if untruncated.shape[-1] >= ids.shape[-1] and not np.array_equal(ids, untruncated):
        removed = []
        for row_full, row_cut in zip(untruncated, ids):
            if row_full.shape[-1] > max_length and not np.array_equal(row_full[:max_length], row_cut):
                removed.append(tokenizer.decode(row_full[max_length - 1 : -1], skip_special_tokens=True))
        if removed:
            message = (
                "The following part of your input was truncated because `max_sequence_length` is set to "
                f"{max_length} tokens: {removed}"
            )
            logger.warning(message)
            warnings.warn(message, PromptTruncatedWarning, stacklevel=2)
    return np.asarray(ids, dtype=np.int32)


def encode_prompts(t5_module, t5_params, ids: jnp.ndarray) -> jnp.ndarray:
    """T5 hidden states ``(B, L, d_model)`` of ``ids`` (no attention mask, as the pipeline).

    Traceable: call it inside ``jax.jit`` or use ``encode_prompts_jit`` (module static).
    """
    return t5_module.apply({"params": t5_params}, jnp.asarray(ids, jnp.int32))


encode_prompts_jit = jax.jit(encode_prompts, static_argnums=0)


def encode_text(
    tokenizer, t5_module, t5_params, prompts: Union[str, Sequence[str]], max_length: int = DEFAULT_MAX_SEQUENCE_LENGTH
) -> jnp.ndarray:
    """Tokenize then encode (jitted) in one call: ``(B, max_length, d_model)``."""
    return encode_prompts_jit(t5_module, t5_params, tokenize_prompts(tokenizer, prompts, max_length))
