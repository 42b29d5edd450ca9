"""Config of the CogVideoX 3D causal VAE (diffusers ``AutoencoderKLCogVideoX``).

``VAEConfig`` carries every field a diffusers ``config.json`` may hold, plus the frame-batching
and tiling defaults diffusers keeps as instance attributes. ``from_diffusers_config`` ignores
unknown keys (``_class_name``, ``_diffusers_version``, ...).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    in_channels: int = 3
    out_channels: int = 3
    down_block_types: Tuple[str, ...] = ("CogVideoXDownBlock3D",) * 4
    up_block_types: Tuple[str, ...] = ("CogVideoXUpBlock3D",) * 4
    block_out_channels: Tuple[int, ...] = (128, 256, 256, 512)
    latent_channels: int = 16
    layers_per_block: int = 3
    act_fn: str = "silu"
    norm_eps: float = 1e-6
    norm_num_groups: int = 32
    temporal_compression_ratio: float = 4
    sample_height: int = 480
    sample_width: int = 720
    scaling_factor: float = 1.15258426
    shift_factor: Optional[float] = None
    latents_mean: Optional[Tuple[float, ...]] = None
    latents_std: Optional[Tuple[float, ...]] = None
    force_upcast: bool = True
    use_quant_conv: bool = False
    use_post_quant_conv: bool = False
    invert_scale_latents: bool = False
    # diffusers instance attributes (not in config.json): frame batching and tiling defaults.
    num_sample_frames_batch_size: int = 8
    num_latent_frames_batch_size: int = 2
    tile_overlap_factor_height: float = 1 / 6
    tile_overlap_factor_width: float = 1 / 5

    def __post_init__(self):
        if len(self.block_out_channels) != len(self.down_block_types) or len(self.block_out_channels) != len(
            self.up_block_types
        ):
            raise ValueError("block_out_channels, down_block_types and up_block_types must have equal lengths")
        for c in self.block_out_channels:
            if c % self.norm_num_groups:
                raise ValueError(f"block_out_channels {self.block_out_channels} not divisible by norm_num_groups")
        if self.act_fn not in ("silu", "swish"):
            raise ValueError(f"unsupported act_fn {self.act_fn!r}")

    # derived sizes ---------------------------------------------------------------------------
    @property
    def spatial_compression(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def temporal_compress_level(self) -> int:
        import math

        return int(math.log2(self.temporal_compression_ratio))

    @property
    def tile_sample_min_height(self) -> int:
        return self.sample_height // 2

    @property
    def tile_sample_min_width(self) -> int:
        return self.sample_width // 2

    @classmethod
    def from_diffusers_config(cls, config: Mapping[str, Any]) -> "VAEConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {}
        for k, v in config.items():
            if k not in names:
                continue
            if isinstance(v, list):
                v = tuple(v)
            kw[k] = v
        return cls(**kw)

    def replace(self, **kw) -> "VAEConfig":
        return dataclasses.replace(self, **kw)


# Presets of the released VAEs (identical architecture; they differ in the latent scaling).
COGVIDEOX_2B = VAEConfig(scaling_factor=1.15258426)
COGVIDEOX_5B = VAEConfig(scaling_factor=0.7)
COGVIDEOX_5B_I2V = VAEConfig(scaling_factor=0.7)
COGVIDEOX_1_5 = VAEConfig(scaling_factor=0.7, invert_scale_latents=True)

PRESETS = {
    "cogvideox-2b": COGVIDEOX_2B,
    "cogvideox-5b": COGVIDEOX_5B,
    "cogvideox-5b-i2v": COGVIDEOX_5B_I2V,
    "cogvideox1.5-5b": COGVIDEOX_1_5,
    "cogvideox1.5-5b-i2v": COGVIDEOX_1_5,
}


def get_preset(name: str) -> VAEConfig:
    try:
        return PRESETS[name.lower()]
    except KeyError:
        raise KeyError(f"unknown VAE preset {name!r}; known: {sorted(PRESETS)}") from None
