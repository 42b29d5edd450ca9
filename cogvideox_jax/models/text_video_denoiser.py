"""T5 encoder + expert transformer as one module, for training the text encoder with the denoiser.

    v = TextVideoDenoiser(t5_cfg, transformer_cfg).apply({"params": p}, latents, token_ids, timestep)

``token_ids`` ``(B, L)`` are the tokenized prompts (``prompt_encoding.tokenize_prompts``; any float or
int dtype, cast to int32: the trainer's batches are float32, exact for ids < 2^24); the T5 runs
without an attention mask, as the pipelines encode prompts, and its hidden states are the
transformer's text input. The param tree is ``{"text_encoder": <T5>, "transformer": <transformer>}``,
so each half saves and loads as the pipeline's own component. CogVideoX keeps its T5 frozen (the
trainer's usual input is cached embeddings); this is for small models trained from scratch (the
embedded shapes model), where the text encoder starts from a random init.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from configs.t5 import T5Config
from configs.transformer import TransformerConfig
from cogvideox_jax.models.t5.t5_encoder import T5EncoderModel
from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D


class TextVideoDenoiser(nn.Module):
    t5_config: T5Config
    config: TransformerConfig          # the transformer's (named like its ``config`` for ModelSpec)
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, latents, token_ids, timestep, ofs=None):
        if self.t5_config.d_model != self.config.text_embed_dim:
            raise ValueError(f"T5 d_model {self.t5_config.d_model} != transformer text_embed_dim "
                             f"{self.config.text_embed_dim}")
        text = T5EncoderModel(self.t5_config, dtype=self.dtype, param_dtype=self.param_dtype,
                              name="text_encoder")(jnp.asarray(token_ids).astype(jnp.int32))
        kw = {} if ofs is None else {"ofs": ofs}
        return CogVideoXTransformer3D(self.config, dtype=self.dtype, param_dtype=self.param_dtype,
                                      name="transformer")(latents, text, timestep, **kw)
