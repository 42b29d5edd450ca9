"""Config of the CogVideoX expert transformer (diffusers ``CogVideoXTransformer3DModel``) plus the
JAX-side execution options (layer scan, remat policy, attention backend, matmul precision, sequence
parallelism)."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

REMAT_POLICIES = ("none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable", "nothing_saveable")
MATMUL_DTYPES = ("float32", "bfloat16")  # TransformerConfig.matmul_dtype
# TransformerConfig fields that say how the model runs, not what it computes: not in a diffusers config
EXECUTION_FIELDS = ("scan_layers", "remat_policy", "attention_backend", "matmul_dtype", "sequence_parallel")


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    num_attention_heads: int = 30
    attention_head_dim: int = 64
    in_channels: int = 16
    out_channels: Optional[int] = 16
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    time_embed_dim: int = 512
    ofs_embed_dim: Optional[int] = None
    text_embed_dim: int = 4096
    num_layers: int = 30
    dropout: float = 0.0
    attention_bias: bool = True
    sample_width: int = 90
    sample_height: int = 60
    sample_frames: int = 49
    patch_size: int = 2
    patch_size_t: Optional[int] = None
    temporal_compression_ratio: int = 4
    max_text_seq_length: int = 226
    activation_fn: str = "gelu-approximate"
    timestep_activation_fn: str = "silu"
    norm_elementwise_affine: bool = True
    norm_eps: float = 1e-5
    spatial_interpolation_scale: float = 1.875
    temporal_interpolation_scale: float = 1.0
    use_rotary_positional_embeddings: bool = False
    use_learned_positional_embeddings: bool = False
    patch_bias: bool = True
    # --- JAX execution options (not in diffusers' config.json) ---
    scan_layers: bool = True           # nn.scan over the blocks: one compile for any depth
    remat_policy: str = "none"         # activation checkpointing of each block
    attention_backend: str = "auto"    # see cogvideox_jax/models/attention.py
    # "bfloat16": the blocks' projections and feed-forward take bf16 operands with fp32 accumulation,
    # forward and backward (cogvideox_jax/models/mixed_precision_dot.py); "float32": exact fp32
    matmul_dtype: str = "float32"
    sequence_parallel: Optional[str] = None  # None | "ulysses" | "ring" (needs a mesh with a 'sequence' axis)

    def __post_init__(self):
        if self.use_learned_positional_embeddings and not self.use_rotary_positional_embeddings:
            raise ValueError("learned positional embeddings without RoPE: no CogVideoX checkpoint uses this")
        if self.matmul_dtype not in MATMUL_DTYPES:
            raise ValueError(f"matmul_dtype {self.matmul_dtype!r}: choose from {MATMUL_DTYPES}")
        if self.remat_policy not in REMAT_POLICIES:
            raise ValueError(f"remat_policy {self.remat_policy!r}: choose from {REMAT_POLICIES}")
        if self.sequence_parallel not in (None, "ulysses", "ring"):
            raise ValueError(f"sequence_parallel must be None, 'ulysses' or 'ring', got {self.sequence_parallel!r}")
        if self.activation_fn != "gelu-approximate" or self.timestep_activation_fn != "silu":
            raise ValueError("only activation_fn='gelu-approximate' and timestep_activation_fn='silu' are supported")
        if not self.norm_elementwise_affine:
            raise ValueError("norm_elementwise_affine=False is not supported (all CogVideoX checkpoints use True)")

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def out_dim(self) -> int:
        return self.out_channels if self.out_channels is not None else self.in_channels

    @property
    def patch_volume(self) -> int:
        return self.patch_size * self.patch_size * (self.patch_size_t or 1)

    @classmethod
    def from_diffusers_config(cls, config: Mapping[str, Any]) -> "TransformerConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in names})

    def to_diffusers_config(self) -> dict:
        d = dataclasses.asdict(self)
        for k in EXECUTION_FIELDS:
            d.pop(k)
        d["_class_name"] = "CogVideoXTransformer3DModel"
        return d

    def replace(self, **kw) -> "TransformerConfig":
        return dataclasses.replace(self, **kw)


_COMMON = dict(time_embed_dim=512, text_embed_dim=4096, max_text_seq_length=226, attention_head_dim=64)
PRESETS = {
    "cogvideox-2b": TransformerConfig(num_attention_heads=30, num_layers=30, **_COMMON),
    "cogvideox-5b": TransformerConfig(num_attention_heads=48, num_layers=42, use_rotary_positional_embeddings=True,
                                      **_COMMON),
    "cogvideox-5b-i2v": TransformerConfig(num_attention_heads=48, num_layers=42, in_channels=32,
                                          use_rotary_positional_embeddings=True,
                                          use_learned_positional_embeddings=True, **_COMMON),
    # the released 1.5 configs' sample size is 300 x 300 latents (the RoPE grid's bound, not a native size:
    # they sample 81 x 768 x 1360)
    "cogvideox1.5-5b": TransformerConfig(num_attention_heads=48, num_layers=42, use_rotary_positional_embeddings=True,
                                         patch_size_t=2, patch_bias=False, sample_height=300, sample_width=300,
                                         sample_frames=81, **_COMMON),
    "cogvideox1.5-5b-i2v": TransformerConfig(num_attention_heads=48, num_layers=42, in_channels=32,
                                             use_rotary_positional_embeddings=True, patch_size_t=2,
                                             patch_bias=False, ofs_embed_dim=512, sample_height=300,
                                             sample_width=300, sample_frames=81, **_COMMON),
    # tiny configs for tests
    "tiny-2b": TransformerConfig(num_attention_heads=2, attention_head_dim=16, num_layers=2, in_channels=4,
                                 out_channels=4, time_embed_dim=16, text_embed_dim=32, sample_height=4,
                                 sample_width=6, sample_frames=9, max_text_seq_length=8),
    "tiny-5b": TransformerConfig(num_attention_heads=2, attention_head_dim=16, num_layers=2, in_channels=4,
                                 out_channels=4, time_embed_dim=16, text_embed_dim=32, sample_height=4,
                                 sample_width=6, sample_frames=9, max_text_seq_length=8,
                                 use_rotary_positional_embeddings=True),
    "tiny-5b-i2v": TransformerConfig(num_attention_heads=2, attention_head_dim=16, num_layers=2, in_channels=8,
                                     out_channels=4, time_embed_dim=16, text_embed_dim=32, sample_height=4,
                                     sample_width=6, sample_frames=9, max_text_seq_length=8,
                                     use_rotary_positional_embeddings=True, use_learned_positional_embeddings=True),
    # the embedded default model (cogvideox_jax/shapes/config.py): 9x64x64 clips -> 3x8x8x16 latents, 24 text tokens
    # (trained with bf16-operand matmuls: 1.5x faster on CPUs with AMX / AVX512-BF16; the checkpoint's
    # config.json does not carry the option, so sampling runs in fp32 unless asked)
    "shapes": TransformerConfig(num_attention_heads=6, attention_head_dim=64, num_layers=4, in_channels=16,
                                out_channels=16, time_embed_dim=128, text_embed_dim=64, sample_height=8,
                                sample_width=8, sample_frames=9, max_text_seq_length=24,
                                use_rotary_positional_embeddings=True, scan_layers=False, matmul_dtype="bfloat16"),
}


def get_preset(name: str) -> TransformerConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown transformer preset {name!r}; available: {sorted(PRESETS)}") from None
