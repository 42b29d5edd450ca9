"""Contrast prompts: a prompt with one attribute word swapped for each of its alternatives.

Contrast guidance (``denoise_loop.py``) steers a sample toward what its prompt says *as opposed to*
the same prompt naming another value of one attribute::

    v = v(∅) + w (v(c) − v(∅)) + w_c (v(c) − mean_k v(c_k))

where ``c_k`` are the contrast prompts. Classifier-free guidance alone amplifies everything the
prompt adds over the empty prompt (color, motion, presence of an object); the contrast term
amplifies only what tells the named value apart from its alternatives (the outline, for shape
words), which is the part a model learns last (cogvideox_jax/shapes/README.md).

``contrast_prompts("a red circle moves left", [("circle", "square", "star")])``
→ ``["a red square moves left", "a red star moves left"]``.

A group contributes only when exactly one of its words occurs in the prompt, once, as a whole word
(case-insensitive; "cross" does not match "across"); otherwise it is skipped, and a prompt with no
contrast prompts gets no contrast term.
"""
from __future__ import annotations

import re
from typing import Sequence


def _word(word: str) -> re.Pattern:
    return re.compile(r"\b" + re.escape(word) + r"\b", re.IGNORECASE)


def contrast_prompts(prompt: str, groups: Sequence[Sequence[str]]) -> list[str]:
    """Every prompt obtained by replacing the one group word ``prompt`` names with another of its group."""
    out = []
    for group in groups:
        found = [(w, len(_word(w).findall(prompt))) for w in group]
        present = [(w, n) for w, n in found if n]
        if len(present) != 1 or present[0][1] != 1:
            continue
        named = present[0][0]
        out += [_word(named).sub(lambda _, o=other: o, prompt) for other in group if other.lower() != named.lower()]
    return out
