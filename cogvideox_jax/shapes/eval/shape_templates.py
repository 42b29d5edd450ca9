"""Shape classification by matching the object's soft coverage against the renderer's shapes.

Every shape of the vocabulary has its centroid at its center, and its area is ``k_shape * radius²``;
so from an object's soft coverage map (``alpha``: 0 = background, 1 = object color) the moments give
each candidate's center (the alpha centroid) and radius (from the alpha mass), and the candidate whose
rendered coverage differs least from ``alpha`` (L1, relative to the object's mass) names the shape.
Upright shapes are assumed (as rendered). Robust at small sizes where binary-mask moments blur.
"""
from __future__ import annotations

import functools

import numpy as np

from cogvideox_jax.shapes.dataset.render import coverage, shape_polygon
from cogvideox_jax.shapes.dataset.vocabulary import SHAPES


@functools.lru_cache(maxsize=None)
def area_factor(shape: str) -> float:
    """Area of ``shape`` at radius 1."""
    poly = shape_polygon(shape, 1.0)
    if poly is None:
        return float(np.pi)
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def template_errors(alpha: np.ndarray, shapes: tuple[str, ...] = SHAPES, pad: int = 3) -> dict[str, float] | None:
    """Relative L1 mismatch ``sum|alpha - coverage_s| / sum(alpha)`` per candidate shape ``s``.

    ``alpha``: float ``(H, W)`` in [0, 1], background ~0. ``None`` if ``alpha`` has (almost) no mass.
    """
    mass = float(alpha.sum())
    if mass < 3.0:
        return None
    ys, xs = np.nonzero(alpha > 0.25)
    if len(xs) == 0:
        return None
    h, w = alpha.shape
    y0, y1 = max(0, ys.min() - pad), min(h, ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(w, xs.max() + pad + 1)
    crop = alpha[y0:y1, x0:x1]
    gy, gx = np.mgrid[y0:y1, x0:x1]
    cx = float((crop * (gx + 0.5)).sum() / crop.sum())
    cy = float((crop * (gy + 0.5)).sum() / crop.sum())
    errs = {}
    for s in shapes:
        radius = float(np.sqrt(mass / area_factor(s)))
        # render in a box that also holds the candidate (it may be larger than the object's box)
        m = int(np.ceil(radius)) + 2
        bx0, by0 = min(x0, int(cx) - m), min(y0, int(cy) - m)
        bx1, by1 = max(x1, int(cx) + m + 1), max(y1, int(cy) + m + 1)
        tmpl = coverage(s, cx - bx0, cy - by0, radius, by1 - by0, bx1 - bx0, supersample=4)
        obs = np.zeros_like(tmpl)
        sy0, sx0 = max(by0, 0), max(bx0, 0)
        sy1, sx1 = min(by1, h), min(bx1, w)
        obs[sy0 - by0:sy1 - by0, sx0 - bx0:sx1 - bx0] = alpha[sy0:sy1, sx0:sx1]
        errs[s] = float(np.abs(obs - tmpl).sum() / mass)
    return errs


def classify_by_template(alpha: np.ndarray, shapes: tuple[str, ...] = SHAPES) -> str | None:
    """Shape with the smallest ``template_errors`` (``None`` if nothing to classify)."""
    errs = template_errors(alpha, shapes)
    return None if errs is None else min(errs, key=errs.get)
