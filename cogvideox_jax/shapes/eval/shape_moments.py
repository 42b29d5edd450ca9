"""Shape features of a binary object mask and nearest-prototype shape classification.

Features (all scale-invariant): extent (area / bounding-box area: circle ≈ π/4, square ≈ 1,
triangle/diamond ≈ 0.5, star ≈ 0.4), solidity (area / convex-hull area: star, cross < 1), the first
Hu moment invariant (μ20 + μ02) / A², and the vertical centroid offset within the bounding box (a
triangle's centroid sits 1/6 of its height below the box center). Prototypes are the renderer's own
shapes rasterized at many radii and sub-pixel offsets, so digitization bias at small sizes cancels.
"""
from __future__ import annotations

import functools

import numpy as np

from cogvideox_jax.shapes.dataset.render import coverage
from cogvideox_jax.shapes.dataset.vocabulary import SHAPES

FEATURE_NAMES = ("extent", "solidity", "hu1", "y_offset")
MIN_AREA = 6


def _hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of 2D points (Andrew's monotone chain + shoelace)."""
    pts = np.unique(points, axis=0)
    if len(pts) < 3:
        return 0.0
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]

    def half(seq):
        h = []
        for p in seq:
            while len(h) >= 2 and ((h[-1][0] - h[-2][0]) * (p[1] - h[-2][1])
                                   - (h[-1][1] - h[-2][1]) * (p[0] - h[-2][0])) <= 0:
                h.pop()
            h.append(p)
        return h

    hull = np.array(half(pts)[:-1] + half(pts[::-1])[:-1], np.float64)
    x, y = hull[:, 0], hull[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def mask_features(mask: np.ndarray) -> np.ndarray | None:
    """``FEATURE_NAMES`` of a 2D boolean mask, or ``None`` if it has fewer than ``MIN_AREA`` pixels."""
    ys, xs = np.nonzero(mask)
    area = len(xs)
    if area < MIN_AREA:
        return None
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    w, h = x1 - x0 + 1, y1 - y0 + 1
    extent = area / float(w * h)
    # Hull of the pixel squares' corners, using only boundary pixels (row/column extremes).
    corners = []
    for y in np.unique(ys):
        row = xs[ys == y]
        corners += [(row.min(), y), (row.max() + 1, y), (row.min(), y + 1), (row.max() + 1, y + 1)]
    solidity = area / max(_hull_area(np.array(corners, np.float64)), 1.0)
    cx, cy = xs.mean(), ys.mean()
    mu = ((xs - cx) ** 2).sum() + ((ys - cy) ** 2).sum() + area / 6.0   # + pixel self-moment 2 * A/12
    hu1 = mu / float(area) ** 2
    y_offset = abs(cy + 0.5 - (y0 + y1 + 1) / 2.0) / h
    return np.array([extent, solidity, hu1, y_offset], np.float64)


@functools.lru_cache(maxsize=1)
def prototypes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features (N, F), labels (N,), per-feature scale (F,)) of the rendered reference shapes."""
    feats, labels = [], []
    offsets = ((0.0, 0.0), (0.25, 0.5), (0.5, 0.75), (0.75, 0.25))
    for label, shape in enumerate(SHAPES):
        for radius in np.linspace(4.5, 16.0, 16):
            for ox, oy in offsets:
                size = int(2 * radius + 6)
                m = coverage(shape, size / 2 + ox, size / 2 + oy, radius, size, size, supersample=4) >= 0.5
                f = mask_features(m)
                if f is not None:
                    feats.append(f)
                    labels.append(label)
    feats = np.array(feats)
    labels = np.array(labels)
    means = np.stack([feats[labels == k].mean(0) for k in range(len(SHAPES))])
    scale = means.std(0) + 1e-6
    return feats, labels, scale


def classify_shape(mask: np.ndarray) -> str | None:
    """Nearest-prototype shape name of one mask (``None`` if the mask is too small)."""
    f = mask_features(mask)
    if f is None:
        return None
    feats, labels, scale = prototypes()
    d = np.linalg.norm((feats - f) / scale, axis=-1)
    return SHAPES[int(labels[int(np.argmin(d))])]
