"""Contrast prompts: a prompt with one attribute word swapped for each of its alternatives.

Contrast guidance (``contrast_guidance``, on the pipeline's ``extra_guidance`` hook; ``sampling.py``)
steers a sample toward what its prompt says *as opposed to* the same prompt naming another value of
one attribute::

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

import jax.numpy as jnp
import numpy as np


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


def contrast_batch(pipe, prompts, contrast_prompts, max_sequence_length: int | None = None):
    """``(K, B, L, D)`` contrast embeddings (contrast k of every prompt; short lists padded with the prompt
    itself) and the ``(K, B)`` mask of real ones; ``(None, None)`` when no prompt has any."""
    lists = [list(c) for c in contrast_prompts]
    if len(lists) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(lists)} contrast prompt lists")
    k = max((len(c) for c in lists), default=0)
    if k == 0:
        return None, None
    padded = [[c[j] if j < len(c) else p for p, c in zip(prompts, lists)] for j in range(k)]
    mask = np.asarray([[float(j < len(c)) for c in lists] for j in range(k)], np.float32)
    text = pipe.encode_prompt([q for row in padded for q in row], max_sequence_length)
    return text.reshape(mask.shape + text.shape[1:]), jnp.asarray(mask)


def contrast_guidance(guided, v_cond, v_contrast, i, args):
    """``ExtraGuidance.combine`` of contrast guidance: ``guided + w_c (v(c) − mean_k v(c_k))`` over each
    video's real contrasts (none: unchanged). ``args``: ``(w_c, mask (K, B))``."""
    scale, mask = args
    mask = mask.reshape(mask.shape + (1,) * (v_cond.ndim - 1))
    count = mask.sum(0)
    mean = (v_contrast * mask).sum(0) / jnp.maximum(count, 1.0)
    return guided + jnp.where(count > 0, scale * (v_cond - mean), 0.0)
