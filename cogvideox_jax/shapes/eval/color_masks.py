"""Background estimate, foreground masks and color naming for shapes clips (numpy; scipy optional).

Videos are handled as float32 ``(T, H, W, 3)`` in [0, 255]; ``as_float255`` converts uint8 or float
[0, 1] / [-1, 1] input.
"""
from __future__ import annotations

import numpy as np

from cogvideox_jax.shapes.dataset.vocabulary import COLORS


def as_float255(video, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """float32 ``(T, H, W, 3)`` in [0, 255] from uint8 or float frames.

    Float input is taken as [0, 1] unless ``value_range`` says otherwise (e.g. ``(-1, 1)``).
    """
    v = np.asarray(video)
    if v.ndim == 3:
        v = v[None]
    if v.ndim != 4 or v.shape[-1] != 3:
        raise ValueError(f"video must be (T, H, W, 3), got {v.shape}")
    if v.dtype == np.uint8:
        return v.astype(np.float32)
    lo, hi = value_range or (0.0, 1.0)
    return np.clip((v.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0) * 255.0


def srgb_to_lab(rgb255) -> np.ndarray:
    """CIELAB (D65) of sRGB values in [0, 255], shape ``(..., 3)``."""
    c = np.asarray(rgb255, np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


_PALETTE_NAMES = tuple(COLORS)
_PALETTE_LAB = srgb_to_lab(np.array([COLORS[k] for k in _PALETTE_NAMES], np.float64))


def name_color(rgb255, names: tuple[str, ...] | None = None) -> str:
    """Nearest palette color (CIELAB ΔE76) to one RGB value in [0, 255]."""
    names = names or _PALETTE_NAMES
    idx = [_PALETTE_NAMES.index(n) for n in names]
    d = np.linalg.norm(_PALETTE_LAB[idx] - srgb_to_lab(rgb255)[None], axis=-1)
    return names[int(np.argmin(d))]


def estimate_background(video255: np.ndarray, border: int = 2) -> np.ndarray:
    """Background RGB ``(3,)``: per-channel median of the ``border``-pixel frame border over all frames."""
    v = video255
    b = max(1, min(border, v.shape[1] // 4, v.shape[2] // 4))
    ring = np.concatenate([v[:, :b].reshape(-1, 3), v[:, -b:].reshape(-1, 3),
                           v[:, b:-b, :b].reshape(-1, 3), v[:, b:-b, -b:].reshape(-1, 3)])
    return np.median(ring, axis=0).astype(np.float32)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    try:
        from scipy import ndimage
    except ImportError:  # pragma: no cover - scipy is optional
        return mask
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (1 + int(np.argmax(sizes)))


def erode(mask: np.ndarray) -> np.ndarray:
    """4-neighbour binary erosion of a 2D mask (outside counts as background)."""
    p = np.pad(mask, 1)
    return mask & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def foreground_masks(video255: np.ndarray, background: np.ndarray, min_contrast: float = 40.0,
                     keep_largest: bool = True) -> np.ndarray:
    """Boolean ``(T, H, W)`` object masks.

    A pixel is foreground when its RGB distance to the background exceeds half the object's contrast
    (the 90th percentile distance among pixels above ``min_contrast``), i.e. the 50%-coverage contour
    of an anti-aliased edge. Frames without any pixel above ``min_contrast`` get an empty mask.
    """
    dist = np.linalg.norm(video255 - background, axis=-1)
    masks = np.zeros(dist.shape, bool)
    for t in range(dist.shape[0]):
        strong = dist[t][dist[t] > min_contrast]
        if strong.size == 0:
            continue
        thr = max(min_contrast * 0.75, 0.5 * float(np.percentile(strong, 90)))
        m = dist[t] > thr
        masks[t] = _largest_component(m) if keep_largest else m
    return masks


def frame_colors(video255: np.ndarray, masks: np.ndarray) -> list[np.ndarray | None]:
    """Per-frame median RGB of the object's interior (mask eroded once; the mask itself if that is empty)."""
    out = []
    for frame, m in zip(video255, masks):
        if not m.any():
            out.append(None)
            continue
        core = erode(m)
        sel = core if core.sum() >= 3 else m
        out.append(np.median(frame[sel], axis=0))
    return out


def dilate(mask: np.ndarray, steps: int = 1) -> np.ndarray:
    """8-neighbour binary dilation of a 2D mask, ``steps`` times."""
    m = mask
    for _ in range(steps):
        p = np.pad(m, 1)
        h, w = m.shape
        m = np.zeros_like(m)
        for dy in range(3):
            for dx in range(3):
                m = m | p[dy:dy + h, dx:dx + w]
    return m


def object_alpha(frame255: np.ndarray, background: np.ndarray, object_rgb: np.ndarray, mask: np.ndarray,
                 grow: int = 2, min_luma_contrast: float = 30.0) -> np.ndarray:
    """Soft coverage ``(H, W)`` in [0, 1] of the object, restricted to ``mask`` grown by ``grow`` pixels
    (so anti-aliased edges count, stray pixels elsewhere do not).

    Uses luma alone when object and background differ by at least ``min_luma_contrast`` luma levels
    (luma is stored at full resolution in yuv420p, chroma at half), else the projection of each pixel
    onto the background→object RGB segment.
    """
    if object_rgb is None or not mask.any():
        return np.zeros(frame255.shape[:2], np.float32)
    bg = np.asarray(background, np.float32)
    d = np.asarray(object_rgb, np.float32) - bg
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    if abs(float(d @ luma)) >= min_luma_contrast:
        a = ((frame255 - bg) @ luma) / float(d @ luma)
    else:
        denom = float(d @ d)
        if denom < 1e-6:
            return np.zeros(frame255.shape[:2], np.float32)
        a = ((frame255 - bg) @ d) / denom
    return (np.clip(a, 0.0, 1.0) * dilate(mask, grow)).astype(np.float32)
