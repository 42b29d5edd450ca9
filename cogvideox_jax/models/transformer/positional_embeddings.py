"""Positional information of the CogVideoX transformer, computed from the latent shape and config.

Shapes are static under ``jit``, so these tables are built with numpy at trace time (float64 where
the reference uses float64, float32 where it uses float32) and enter the compiled program as
constants: callers never pass positional embeddings.

* 3D sin-cos (CogVideoX-2b): ``concat[temporal D/4, spatial 3D/4]``; the spatial half is
  ``[sincos(w) | sincos(h)]`` (the reference's meshgrid "xy" - its block named h encodes w); grid
  positions divided by the spatial / temporal interpolation scales.
* 3D RoPE (5b, 1.5): head dim split t/h/w = D/4, 3D/8, 3D/8; 1.0 positions come from fitting the
  grid into the ``sample`` grid (``resize_crop_region``: aspect-preserving, centred, fractional
  positions at other sizes); 1.5 uses integer positions ("slice" grid).
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


def resize_crop_region(grid_hw: tuple[int, int], base_w: int, base_h: int):
    """``((top, left), (bottom, right))`` of the grid fitted (aspect-preserving, centred) in the base grid."""
    h, w = grid_hw
    if h / w > base_h / base_w:
        rh, rw = base_h, int(round(base_h / h * w))
    else:
        rw, rh = base_w, int(round(base_w / w * h))
    top, left = int(round((base_h - rh) / 2.0)), int(round((base_w - rw) / 2.0))
    return (top, left), (top + rh, left + rw)


def _rope_1d(dim: int, pos: np.ndarray, theta: float = 10000.0):
    freqs = (1.0 / (np.float32(theta) ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)))).astype(np.float32)
    f = np.outer(pos.astype(np.float32), freqs).astype(np.float32)
    return np.repeat(np.cos(f), 2, axis=1), np.repeat(np.sin(f), 2, axis=1)


def rope_3d(cfg: TransformerConfig, latent_t: int, latent_h: int, latent_w: int):
    """``(cos, sin)`` each ``(tokens, head_dim)`` float32 for the video tokens, order (t, h, w)."""
    p, pt = cfg.patch_size, cfg.patch_size_t
    gh, gw = latent_h // p, latent_w // p
    base_h, base_w = cfg.sample_height // p, cfg.sample_width // p
    if pt is None:
        (top, left), (bottom, right) = resize_crop_region((gh, gw), base_w, base_h)
        pos_h = np.linspace(top, bottom * (gh - 1) / gh, gh, dtype=np.float32)
        pos_w = np.linspace(left, right * (gw - 1) / gw, gw, dtype=np.float32)
        frames = latent_t
        pos_t = np.linspace(0, frames * (frames - 1) / frames, frames, dtype=np.float32)
    else:
        frames = -(-latent_t // pt)
        pos_h, pos_w, pos_t = (np.arange(n, dtype=np.float32) for n in (gh, gw, frames))
    d = cfg.attention_head_dim
    dt, dh, dw = d // 4, d // 8 * 3, d // 8 * 3
    parts = [_rope_1d(dt, pos_t), _rope_1d(dh, pos_h), _rope_1d(dw, pos_w)]
    out = []
    for k in range(2):  # cos, sin
        t_, h_, w_ = (x[k] for x in parts)
        grid = np.concatenate([
            np.broadcast_to(t_[:, None, None, :], (frames, gh, gw, dt)),
            np.broadcast_to(h_[None, :, None, :], (frames, gh, gw, dh)),
            np.broadcast_to(w_[None, None, :, :], (frames, gh, gw, dw)),
        ], axis=-1)
        out.append(grid.reshape(frames * gh * gw, dt + dh + dw).astype(np.float32))
    return out[0], out[1]


def apply_rope(x, cos, sin):
    """Rotate adjacent pairs of the last dim of ``x`` (B, S, H, D) by (cos, sin) (S, D), in float32."""
    import jax.numpy as jnp

    xf = x.astype(jnp.float32)
    pairs = xf.reshape(*xf.shape[:-1], -1, 2)
    rotated = jnp.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(xf.shape)
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    return (xf * cos + rotated * sin).astype(x.dtype)
