"""3D rotary position embedding of the video tokens (CogVideoX-5b, 1.5), computed from the latent
shape and config at trace time (numpy, float32 like the reference); applied in float32.

Head dim split t/h/w = D/4, 3D/8, 3D/8; cos/sin repeat-interleaved; token order (t, h, w).
1.0: positions from fitting the grid into the ``sample`` grid (``resize_crop_region``:
aspect-preserving, centred; fractional ``linspace`` positions); 1.5: integer positions ("slice").
"""
from __future__ import annotations

import numpy as np

from configs.transformer import TransformerConfig


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
