"""Spatial tiling with overlap blending (diffusers ``tiled_encode`` / ``tiled_decode``).

Tiles of ``tile_sample_min_{height,width}`` pixels (default: half the config's sample size,
240 x 360) or the matching latent size (/ 2**(levels-1)); tiles start every
``tile * (1 - overlap_factor)`` and the seam of each tile with its upper / left neighbour (already
blended, as diffusers blends in place) is mixed with linear ramps over
``int(other_tile * overlap_factor)`` rows / columns, then every tile is cropped to the stride.
Each tile is frame-batched like the untiled path. Tiles at the edges may be smaller.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class TilingConfig:
    tile_sample_min_height: Optional[int] = None  # default: config.sample_height // 2
    tile_sample_min_width: Optional[int] = None  # default: config.sample_width // 2
    tile_overlap_factor_height: Optional[float] = None  # default: 1/6
    tile_overlap_factor_width: Optional[float] = None  # default: 1/5

    @classmethod
    def resolve(cls, tiling, config) -> Optional["TilingConfig"]:
        if tiling is None or tiling is False:
            return None
        t = cls() if tiling is True else tiling
        if not isinstance(t, TilingConfig):
            raise TypeError(f"tiling must be a bool or a TilingConfig, got {type(tiling).__name__}")
        return cls(
            t.tile_sample_min_height or config.tile_sample_min_height,
            t.tile_sample_min_width or config.tile_sample_min_width,
            t.tile_overlap_factor_height or config.tile_overlap_factor_height,
            t.tile_overlap_factor_width or config.tile_overlap_factor_width,
        )

    def latent_tile(self, config) -> tuple[int, int]:
        s = config.spatial_compression
        return int(self.tile_sample_min_height / s), int(self.tile_sample_min_width / s)

    def needs_tiling(self, hw, *, latent: bool, config) -> bool:
        th, tw = self.latent_tile(config) if latent else (self.tile_sample_min_height, self.tile_sample_min_width)
        return hw[1] > tw or hw[0] > th


def _ramp(n: int, dtype):
    return (jnp.arange(n, dtype=jnp.float32) / n).astype(dtype)


def blend_v(a, b, extent: int):
    """Mix the bottom ``extent`` rows of ``a`` into the top rows of ``b`` (axis 2 = height)."""
    extent = min(a.shape[2], b.shape[2], extent)
    if extent <= 0:
        return b
    w = _ramp(extent, jnp.float32)[None, None, :, None, None]
    mixed = a[:, :, -extent:].astype(jnp.float32) * (1 - w) + b[:, :, :extent].astype(jnp.float32) * w
    return b.at[:, :, :extent].set(mixed.astype(b.dtype))


def blend_h(a, b, extent: int):
    """Mix the right ``extent`` columns of ``a`` into the left columns of ``b`` (axis 3 = width)."""
    extent = min(a.shape[3], b.shape[3], extent)
    if extent <= 0:
        return b
    w = _ramp(extent, jnp.float32)[None, None, None, :, None]
    mixed = a[:, :, :, -extent:].astype(jnp.float32) * (1 - w) + b[:, :, :, :extent].astype(jnp.float32) * w
    return b.at[:, :, :, :extent].set(mixed.astype(b.dtype))


def tiled_apply(fn: Callable, x, tiling: TilingConfig, config, *, encode: bool):
    """Apply ``fn`` (frame-batched encode or decode) tile by tile and blend the tiles."""
    sth, stw = tiling.tile_sample_min_height, tiling.tile_sample_min_width
    lth, ltw = tiling.latent_tile(config)
    fh, fw = tiling.tile_overlap_factor_height, tiling.tile_overlap_factor_width
    if encode:
        in_h, in_w = sth, stw
        out_h, out_w = lth, ltw
    else:
        in_h, in_w = lth, ltw
        out_h, out_w = sth, stw
    step_h, step_w = int(in_h * (1 - fh)), int(in_w * (1 - fw))
    blend_h_ext, blend_w_ext = int(out_h * fh), int(out_w * fw)
    limit_h, limit_w = out_h - blend_h_ext, out_w - blend_w_ext
    if step_h <= 0 or step_w <= 0:
        raise ValueError(f"tile overlap leaves no stride: {tiling}")
    height, width = x.shape[2:4]
    rows = []
    for i in range(0, height, step_h):
        row = []
        for j in range(0, width, step_w):
            tile = fn(x[:, :, i : i + in_h, j : j + in_w])
            if rows:
                tile = blend_v(rows[-1][len(row)], tile, blend_h_ext)
            if row:
                tile = blend_h(row[-1], tile, blend_w_ext)
            row.append(tile)
        rows.append(row)
    out_rows = [jnp.concatenate([t[:, :, :limit_h, :limit_w] for t in row], axis=3) for row in rows]
    return jnp.concatenate(out_rows, axis=2)
