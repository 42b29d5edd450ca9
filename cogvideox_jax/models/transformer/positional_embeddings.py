"""Additive positional embeddings of the CogVideoX transformer, computed from the latent shape and config.

Shapes are static under ``jit``, so these tables are built with numpy at trace time (float64 where
the reference uses float64, float32 where it uses float32) and enter the compiled program as
constants: callers never pass positional embeddings.

* 3D sin-cos (CogVideoX-2b): ``concat[temporal D/4, spatial 3D/4]``; the spatial half is
  ``[sincos(w) | sincos(h)]`` (the reference's meshgrid "xy" - its block named h encodes w); grid
  positions divided by the spatial / temporal interpolation scales.
* learned table (5b-I2V): a parameter of ``CogVideoXTransformer3D``.
* 3D RoPE (5b, 1.5): see ``rope_3d.py``.
"""
from __future__ import annotations

import numpy as np

from configs.transformer import TransformerConfig


def _sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = np.outer(pos.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_3d(embed_dim: int, grid_w: int, grid_h: int, frames: int, spatial_scale: float,
              temporal_scale: float) -> np.ndarray:
    """``(frames * grid_h * grid_w, embed_dim)`` float32, token order (t, h, w)."""
    if embed_dim % 4:
        raise ValueError("sin-cos positional embedding needs embed_dim divisible by 4")
    d_spatial, d_temporal = 3 * embed_dim // 4, embed_dim // 4
    gh = np.arange(grid_h, dtype=np.float32) / np.float32(spatial_scale)
    gw = np.arange(grid_w, dtype=np.float32) / np.float32(spatial_scale)
    mesh_w, mesh_h = np.meshgrid(gw, gh, indexing="xy")  # (grid_h, grid_w) each
    spatial = np.concatenate([_sincos_1d(d_spatial // 2, mesh_w), _sincos_1d(d_spatial // 2, mesh_h)], axis=1)
    gt = np.arange(frames, dtype=np.float32) / np.float32(temporal_scale)
    temporal = _sincos_1d(d_temporal, gt)  # (frames, d_temporal)
    hw = grid_h * grid_w
    pe = np.concatenate([np.repeat(temporal[:, None, :], hw, axis=1),
                         np.repeat(spatial[None, :, :], frames, axis=0)], axis=-1)
    return pe.reshape(frames * hw, embed_dim).astype(np.float32)


def video_sincos_table(cfg: TransformerConfig, t: int, h: int, w: int) -> np.ndarray:
    """The 2b-style table for latents of ``t`` frames and ``h`` x ``w`` (pre-patch) size."""
    p = cfg.patch_size
    return sincos_3d(cfg.inner_dim, w // p, h // p, t, cfg.spatial_interpolation_scale,
                     cfg.temporal_interpolation_scale)
