"""Spatial tiling with overlap blending (diffusers ``tiled_encode`` / ``tiled_decode``).

Tiles of ``tile_sample_min_{height,width}`` pixels (default: half the config's sample size,
240 x 360) or the matching latent size (/ 2**(levels-1)); tiles start every
``tile * (1 - overlap_factor)`` and the seam of each tile with its upper / left neighbour (already
blended, as diffusers blends in place) is mixed with linear ramps over
``int(other_tile * overlap_factor)`` rows / columns, then every tile is cropped to the stride.
Each tile is frame-batched like the untiled path. Tiles at the edges may be smaller.

The kept part of each tile must equal the stride between tiles times the compression (diffusers'
defaults on the released VAEs: latent tiles of 30 x 45 every 25 x 36 latents, 200 x 288 px kept).
Settings where they differ (e.g. the defaults on a VAE with a tiny ``sample_height``) make diffusers
return a video of the wrong size without a word; here ``tiled_apply`` raises a ``ValueError`` instead.
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


def tiled_apply(fn: Callable, x, tiling: TilingConfig, config, *, encode: bool, sequential: bool = False):
    """Apply ``fn`` (frame-batched encode or decode) tile by tile and blend the tiles.

    ``sequential=True`` (``fn`` a pure function of the tile, no Linen calls inside): the tiles of each
    shape (at most four: inner, right edge, bottom edge, corner) run under one ``lax.map``, so each
    shape is traced and compiled once and the tiles run one after the other (the memory of one tile);
    otherwise every tile is traced on its own (the module's ``decode(tiling=...)``)."""
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
    s = config.spatial_compression
    ratio = (lambda n: n // s) if encode else (lambda n: n * s)
    if ratio(step_h) != limit_h or ratio(step_w) != limit_w:
        raise ValueError(
            f"tiles of {sth}x{stw} px (overlap {fh:.3g} / {fw:.3g}) do not line up for this VAE: tiles start every "
            f"{step_h}x{step_w} {'px' if encode else 'latents'} but {limit_h}x{limit_w} "
            f"{'latents' if encode else 'px'} of each are kept (the output would be the wrong size); choose "
            f"tile sizes for which they match (diffusers' defaults do on the released VAEs: 240x360 px)")
    height, width = x.shape[2:4]
    starts = [(i, j) for i in range(0, height, step_h) for j in range(0, width, step_w)]
    inputs = {ij: x[:, :, ij[0]: ij[0] + in_h, ij[1]: ij[1] + in_w] for ij in starts}
    if sequential:
        import jax

        outputs = {}
        by_shape: dict = {}
        for ij in starts:
            by_shape.setdefault(inputs[ij].shape, []).append(ij)
        for group in by_shape.values():
            stacked = jax.lax.map(fn, jnp.stack([inputs[ij] for ij in group]))
            outputs.update({ij: stacked[k] for k, ij in enumerate(group)})
    else:
        outputs = {ij: fn(inputs[ij]) for ij in starts}
    rows = []
    for i in range(0, height, step_h):
        row = []
        for j in range(0, width, step_w):
            tile = outputs[(i, j)]
            if rows:
                tile = blend_v(rows[-1][len(row)], tile, blend_h_ext)
            if row:
                tile = blend_h(row[-1], tile, blend_w_ext)
            row.append(tile)
        rows.append(row)
    out_rows = [jnp.concatenate([t[:, :, :limit_h, :limit_w] for t in row], axis=3) for row in rows]
    return jnp.concatenate(out_rows, axis=2)


def tiled_decode(decode_fn: Callable, z, tiling, config):
    """``decode_fn(z)`` (a pure function: unscaled latents ``(B, t, h, w, C)`` -> frames) in tiles when
    ``tiling`` (``True`` / a ``TilingConfig``) asks for it and the latents exceed a tile, each tile shape
    compiled once and the tiles run one after the other (``tiled_apply(..., sequential=True)``)."""
    tcfg = TilingConfig.resolve(tiling, config)
    if tcfg is None or not tcfg.needs_tiling(z.shape[2:4], latent=True, config=config):
        return decode_fn(z)
    return tiled_apply(decode_fn, z, tcfg, config, encode=False, sequential=True)


def tiled_encode_moments(moments_fn: Callable, x, tiling, config):
    """As ``tiled_decode`` for the encoder's moments (``(B, t, h, w, 2C)``) of a video ``x`` in [-1, 1]."""
    tcfg = TilingConfig.resolve(tiling, config)
    if tcfg is None or not tcfg.needs_tiling(x.shape[2:4], latent=False, config=config):
        return moments_fn(x)
    return tiled_apply(moments_fn, x, tcfg, config, encode=True, sequential=True)
