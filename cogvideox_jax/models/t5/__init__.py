"""T5 v1.1 text encoder (transformers ``T5EncoderModel`` port) and CogVideoX prompt encoding."""
from cogvideox_jax.models.t5.prompt_encoding import (
    DEFAULT_MAX_SEQUENCE_LENGTH,
    PromptTruncatedWarning,
    encode_prompts,
    encode_prompts_jit,
    encode_text,
    load_tokenizer,
    tokenize_prompts,
)
from cogvideox_jax.models.t5.t5_encoder import T5EncoderModel

__all__ = [
    "DEFAULT_MAX_SEQUENCE_LENGTH",
    "PromptTruncatedWarning",
    "T5EncoderModel",
    "encode_prompts",
    "encode_prompts_jit",
    "encode_text",
    "load_tokenizer",
    "tokenize_prompts",
]
