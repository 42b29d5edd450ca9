"""Config of the T5 v1.1 text encoder (transformers ``T5EncoderModel``).

``T5Config.from_hf_config`` reads a transformers ``config.json`` dict and ignores unknown keys
(``architectures``, ``decoder_start_token_id``, ...). ``feed_forward_proj`` follows transformers:
``"gated-gelu"`` -> gated FF with ``gelu_new`` (tanh approximation); ``"relu"`` -> plain FF.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

_ACTIVATIONS = ("relu", "gelu", "gelu_new", "silu")


@dataclasses.dataclass(frozen=True)
class T5Config:
    vocab_size: int = 32128
    d_model: int = 4096
    d_kv: int = 64
    d_ff: int = 10240
    num_layers: int = 24
    num_heads: int = 64
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "gated-gelu"
    pad_token_id: int = 0
    eos_token_id: int = 1

    def __post_init__(self):
        if self.dense_act_fn not in _ACTIVATIONS:
            raise ValueError(f"unsupported feed_forward_proj {self.feed_forward_proj!r}")
        if self.relative_attention_num_buckets < 4 or self.relative_attention_max_distance < 2:
            raise ValueError("relative_attention_num_buckets must be >= 4 and max_distance >= 2")

    # derived ----------------------------------------------------------------------------------
    @property
    def is_gated_act(self) -> bool:
        return self.feed_forward_proj.split("-")[0] == "gated"

    @property
    def dense_act_fn(self) -> str:
        """Activation name exactly as transformers resolves it (``gated-gelu`` -> ``gelu_new``)."""
        if self.feed_forward_proj == "gated-gelu":
            return "gelu_new"
        return self.feed_forward_proj.split("-")[-1]

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.d_kv

    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any]) -> "T5Config":
        config = dict(config)
        if "num_hidden_layers" in config and "num_layers" not in config:
            config["num_layers"] = config["num_hidden_layers"]
        if "n_positions" in config:  # unused by T5 (relative positions), kept for clarity
            config.pop("n_positions")
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in config.items() if k in names and v is not None}
        return cls(**kw)

    def replace(self, **kw) -> "T5Config":
        return dataclasses.replace(self, **kw)


# T5 v1.1 XXL: the text encoder of every released CogVideoX model.
T5_V1_1_XXL = T5Config()
# Tiny configs for tests (max_distance 16 so that ~40-token prompts reach the far buckets).
T5_TINY = T5Config(
    vocab_size=128,
    d_model=32,
    d_kv=8,
    d_ff=64,
    num_layers=2,
    num_heads=4,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=16,
)
T5_TINY_RELU = T5_TINY.replace(feed_forward_proj="relu")

PRESETS = {
    "t5-v1_1-xxl": T5_V1_1_XXL,
    "tiny": T5_TINY,
    "tiny-relu": T5_TINY_RELU,
}


def get_preset(name: str) -> T5Config:
    try:
        return PRESETS[name.lower()]
    except KeyError:
        raise KeyError(f"unknown T5 preset {name!r}; known: {sorted(PRESETS)}") from None
