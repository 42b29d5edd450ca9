"""Templated captions for the shapes dataset and the parser that recovers the attributes from them.

``make_caption(attrs, rng)`` picks one of several templates and motion phrasings; ``parse_caption``
recovers ``{"color", "shape", "direction", "size", "background"}`` (size/background ``None`` when the
caption does not say) from any of them, and from free-form prompts that use the same words.
"""
from __future__ import annotations

import re

import numpy as np

from cogvideox_jax.shapes.dataset.vocabulary import (BACKGROUNDS, COLOR_SYNONYMS, COLORS, DIRECTIONS, SHAPE_SYNONYMS,
                                                  SHAPES, SIZE_WORDS)

# (third-person verb phrase, participle phrase) per direction.
MOTION_PHRASES: dict[str, tuple[tuple[str, str], ...]] = {
    "left": (("moves to the left", "moving to the left"), ("drifts left", "drifting left"),
             ("slides leftward", "sliding leftward"), ("travels toward the left", "traveling toward the left")),
    "right": (("moves to the right", "moving to the right"), ("drifts right", "drifting right"),
              ("slides rightward", "sliding rightward"), ("travels toward the right", "traveling toward the right")),
    "up": (("moves up", "moving up"), ("drifts upward", "drifting upward"),
           ("rises", "rising"), ("floats upward", "floating upward")),
    "down": (("moves down", "moving down"), ("drifts downward", "drifting downward"),
             ("falls", "falling"), ("sinks downward", "sinking downward")),
    "still": (("stays still", "staying still"), ("remains in place", "remaining in place"),
              ("sits motionless", "sitting motionless"), ("does not move", "not moving")),
}

# {a}: article for the noun phrase, {np}: "[size ]color shape", {v}: verb phrase, {ing}: participle phrase,
# {bg}: background name. Templates without {bg} leave the background unsaid.
TEMPLATES: tuple[str, ...] = (
    "{a} {np} {v}",
    "{a} {np} {v} on a {bg} background",
    "{a} {np} {ing} over a {bg} background",
    "a video of {a} {np} that {v}",
    "on a {bg} background, {a} {np} {v}",
    "{a} {np} {ing} across a plain {bg} background",
    "short clip: {a} {np} {ing}",
    "animation of {a} {np} {ing}, {bg} background",
)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def render_caption(attrs: dict, template: int, phrasing: int, with_size: bool) -> str:
    """Caption for ``attrs`` (color, shape, direction, size, background) with explicit template choices."""
    words = ([attrs["size"]] if with_size else []) + [attrs["color"], attrs["shape"]]
    np_ = " ".join(words)
    v, ing = MOTION_PHRASES[attrs["direction"]][phrasing]
    return TEMPLATES[template].format(a=_article(np_), np=np_, v=v, ing=ing, bg=attrs["background"])


def make_caption(attrs: dict, rng: np.random.Generator) -> str:
    """A randomly worded caption for ``attrs`` (deterministic given ``rng``'s state)."""
    template = int(rng.integers(len(TEMPLATES)))
    phrasing = int(rng.integers(len(MOTION_PHRASES[attrs["direction"]])))
    with_size = bool(rng.random() < 0.7)
    return render_caption(attrs, template, phrasing, with_size)


_STILL = re.compile(r"\b(still|in place|motionless|stationary|not mov\w*|static)\b")
_DIR_PATTERNS = (
    ("left", re.compile(r"\bleft(ward|wards)?\b")),
    ("right", re.compile(r"\bright(ward|wards)?\b")),
    ("up", re.compile(r"\b(up|upward|upwards|rises|rising|rise|ascend\w*)\b")),
    ("down", re.compile(r"\b(down|downward|downwards|falls|falling|fall|sinks|sinking|sink|descend\w*)\b")),
)
_BG = re.compile(r"\b([a-z]+)\s+(background|backdrop)\b")


def _canon(word: str, canon: dict, syn: dict):
    word = syn.get(word, word)
    return word if word in canon else None


def parse_caption(caption: str) -> dict:
    """Attributes named in ``caption``: ``color``, ``shape``, ``direction`` (``None`` where absent), plus
    ``size`` and ``background`` (``None`` where the caption does not say).

    The object color is the first object-color word outside the "<name> background" phrase; the
    direction is "still" if a stillness phrase occurs, else the first direction word.
    """
    text = caption.lower()
    background = None
    m = _BG.search(text)
    if m:
        background = _canon(m.group(1), BACKGROUNDS, COLOR_SYNONYMS)
        text = text[:m.start()] + " " + text[m.end():]
    tokens = re.findall(r"[a-z]+", text)
    color = next((c for c in (_canon(t, COLORS, COLOR_SYNONYMS) for t in tokens) if c), None)
    shape = next((s for s in (_canon(t, set(SHAPES), SHAPE_SYNONYMS) for t in tokens) if s), None)
    size = next((SIZE_WORDS[t] for t in tokens if t in SIZE_WORDS), None)
    direction = None
    if _STILL.search(text):
        direction = "still"
    else:
        hits = [(p.search(text).start(), d) for d, p in _DIR_PATTERNS if p.search(text)]
        if hits:
            direction = min(hits)[1]
    assert direction is None or direction in DIRECTIONS
    return {"color": color, "shape": shape, "direction": direction, "size": size, "background": background}
