"""Captions with the shape word swapped for each other shape: the negatives of the caption-contrastive
training term (``train/caption_contrast.py``).

``swapped_shape_captions("a small red disc moves left")`` -> the caption naming square, triangle,
star, cross and diamond instead (a synonym counts as its shape: "disc" is a circle, so no circle
caption is among them). A caption must name exactly one shape word. The sampling-time counterpart,
``cogvideox_jax/shapes/contrast_prompts.py``, swaps only the words it is given (a user's prompt has no synonym
table); training captions use the dataset's synonyms, so they are matched here.
"""
from __future__ import annotations

import re

from cogvideox_jax.shapes.dataset.vocabulary import SHAPE_SYNONYMS, SHAPES

_CANONICAL = {w: w for w in SHAPES} | dict(SHAPE_SYNONYMS)
_PATTERN = re.compile(r"\b(" + "|".join(sorted(_CANONICAL, key=len, reverse=True)) + r")\b", re.IGNORECASE)


def swapped_shape_captions(caption: str) -> list[str]:
    """The ``len(SHAPES) - 1`` captions naming each other shape, in ``SHAPES`` order."""
    found = _PATTERN.findall(caption)
    if len(found) != 1:
        raise ValueError(f"caption must name exactly one shape word, found {found}: {caption!r}")
    named = _CANONICAL[found[0].lower()]
    return [_PATTERN.sub(other, caption) for other in SHAPES if other != named]
