"""Procedural rendering of one shapes clip: a flat-colored shape moving in a straight line over a flat
background, optionally anti-aliased by supersampled coverage.

Geometry is in pixel units, image coordinates (x right, y down); ``radius`` is the circumradius of the
shape (the square's half side is ``0.85 * radius`` so the sizes look alike).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cogvideox_jax.shapes.dataset.vocabulary import (BACKGROUNDS, COLORS, DIRECTION_VECTORS, MOTION_FRACTION,
                                                  SIZE_RADIUS_64)


def shape_polygon(shape: str, radius: float) -> np.ndarray | None:
    """Vertices ``(N, 2)`` (x, y) of the shape centered at the origin, or ``None`` for the circle."""
    r = float(radius)
    if shape == "circle":
        return None
    if shape == "square":
        s = 0.85 * r
        return np.array([[-s, -s], [s, -s], [s, s], [-s, s]])
    if shape == "triangle":  # equilateral, pointing up (apex at -y)
        ang = np.deg2rad([-90.0, 30.0, 150.0])
        return np.stack([r * np.cos(ang), r * np.sin(ang)], -1)
    if shape == "diamond":
        return np.array([[0.0, -r], [0.72 * r, 0.0], [0.0, r], [-0.72 * r, 0.0]])
    if shape == "star":  # five points, inner radius 0.45 r
        ang = np.deg2rad(-90.0 + 36.0 * np.arange(10))
        rad = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        return np.stack([rad * np.cos(ang), rad * np.sin(ang)], -1)
    if shape == "cross":  # plus sign, arm half-width 0.33 r
        a, w = 0.9 * r, 0.33 * r
        return np.array([[-w, -a], [w, -a], [w, -w], [a, -w], [a, w], [w, w], [w, a], [-w, a], [-w, w],
                         [-a, w], [-a, -w], [-w, -w]])
    raise ValueError(f"unknown shape {shape!r}")


def _inside_polygon(x: np.ndarray, y: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test, vectorized over the points."""
    inside = np.zeros(x.shape, bool)
    n = len(poly)
    for i in range(n):
        x0, y0 = poly[i]
        x1, y1 = poly[(i + 1) % n]
        crosses = (y0 > y) != (y1 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < xint)
    return inside


def coverage(shape: str, cx: float, cy: float, radius: float, height: int, width: int,
             supersample: int = 4) -> np.ndarray:
    """Fraction of each pixel covered by the shape, float32 ``(H, W)`` in [0, 1].

    Pixel (i, j) spans [j, j+1) x [i, i+1); ``supersample`` points per axis per pixel (1 = aliased,
    sampled at the pixel center).
    """
    s = max(1, int(supersample))
    offs = (np.arange(s) + 0.5) / s
    ys = (np.arange(height)[:, None] + offs[None, :]).reshape(-1) - cy
    xs = (np.arange(width)[:, None] + offs[None, :]).reshape(-1) - cx
    X, Y = np.meshgrid(xs, ys)
    poly = shape_polygon(shape, radius)
    if poly is None:
        hit = X * X + Y * Y <= radius * radius
    else:
        # Only test points inside the bounding box of the polygon (cheap for small shapes).
        hit = np.zeros(X.shape, bool)
        box = (np.abs(X) <= radius + 1) & (np.abs(Y) <= radius + 1)
        hit[box] = _inside_polygon(X[box], Y[box], poly)
    return hit.reshape(height, s, width, s).mean(axis=(1, 3)).astype(np.float32)


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render one clip (all geometry in pixels)."""
    color: str
    shape: str
    direction: str
    size: str
    background: str
    radius: float
    start: tuple[float, float]     # (x, y) center at frame 0
    end: tuple[float, float]       # (x, y) center at the last frame
    num_frames: int = 17
    height: int = 64
    width: int = 64


def sample_clip_spec(attrs: dict, rng: np.random.Generator, num_frames: int = 17, height: int = 64,
                     width: int = 64, margin: float = 2.0) -> ClipSpec:
    """Random radius/path for ``attrs`` (color, shape, direction, size, background) that keeps the whole
    shape at least ``margin`` pixels (at a 64-pixel frame; scaled like the radius) inside the frame for
    the entire clip."""
    side = min(height, width)
    lo, hi = SIZE_RADIUS_64[attrs["size"]]
    radius = float(rng.uniform(lo, hi)) * side / 64.0
    dx, dy = DIRECTION_VECTORS[attrs["direction"]]
    dist = float(rng.uniform(*MOTION_FRACTION)) * side if (dx or dy) else 0.0
    pad = radius + margin * side / 64.0

    def axis_range(extent: int, d: float) -> tuple[float, float]:
        # start s with pad <= s and s + d within [pad, extent - pad]
        a, b = pad - min(d, 0.0), extent - pad - max(d, 0.0)
        if a > b:
            raise ValueError(f"clip of {extent} px is too small for radius {radius:.1f} moving {abs(d):.1f} px")
        return a, b

    ax, bx = axis_range(width, dx * dist)
    ay, by = axis_range(height, dy * dist)
    x0, y0 = float(rng.uniform(ax, bx)), float(rng.uniform(ay, by))
    return ClipSpec(attrs["color"], attrs["shape"], attrs["direction"], attrs["size"], attrs["background"],
                    radius, (x0, y0), (x0 + dx * dist, y0 + dy * dist), num_frames, height, width)


def render_clip(spec: ClipSpec, antialias: bool = True) -> np.ndarray:
    """uint8 frames ``(T, H, W, 3)``: the shape moving linearly from ``spec.start`` to ``spec.end``."""
    bg = np.asarray(BACKGROUNDS[spec.background], np.float32)
    fg = np.asarray(COLORS[spec.color], np.float32)
    t = np.linspace(0.0, 1.0, spec.num_frames) if spec.num_frames > 1 else np.zeros(1)
    frames = np.empty((spec.num_frames, spec.height, spec.width, 3), np.uint8)
    for i, ti in enumerate(t):
        cx = spec.start[0] + ti * (spec.end[0] - spec.start[0])
        cy = spec.start[1] + ti * (spec.end[1] - spec.start[1])
        a = coverage(spec.shape, cx, cy, spec.radius, spec.height, spec.width, 4 if antialias else 1)[..., None]
        frames[i] = np.clip(np.rint(bg * (1.0 - a) + fg * a), 0, 255).astype(np.uint8)
    return frames
