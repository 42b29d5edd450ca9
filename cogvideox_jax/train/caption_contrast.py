"""A caption-contrastive training term: the true caption must explain a clip better than the same
caption with one attribute word swapped (e.g. "a red *cross* moves left" vs "a red *circle* moves left").

The v-loss alone rewards an outline with ~1–3 % of an object's error (BENCHMARKS.md, "latent shape
contrast"), so a model can fit the data while its prediction barely depends on the shape word. Each
row is also denoised with a swapped caption (same noisy latent, timestep and noise), and with
per-row v-losses ``L`` (true caption) and ``L_s`` (swapped) and the relative gap
``g = (L_s − L) / sg(L)``, the term is

    sg(L) / β · softplus(−β g)

averaged over the rows whose caption was not dropped: ~``sg(L)·(−g)`` while the swapped caption fits
as well as the true one (g ≤ 0), vanishing once it fits clearly worse (g ≫ 1/β). Its gradient raises
``L_s`` and lowers ``L``: the model learns to make the word matter. ``sg`` is stop-gradient; scaling
by ``sg(L)`` keeps the term in the v-loss's units at every timestep. It is a diffusion-classifier
objective (the model's per-caption loss as a likelihood, Li et al. 2023) trained as a margin.

The swapped captions are data (``data/shapes/swapped_captions.py`` builds them for the shapes
dataset); the trainer feeds one per row per step (``TrainConfig.caption_contrast_weight``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def caption_contrast_term(loss_true, loss_swapped, keep, sharpness: float):
    """Per-row v-losses ``(B,)`` of the true and the swapped caption, ``keep`` (B,) bool (rows whose
    caption was not dropped) -> ``(term, mean relative gap)`` over the kept rows (0 when none is)."""
    lt = jax.lax.stop_gradient(loss_true)
    gap = (loss_swapped - loss_true) / lt
    w = keep.astype(jnp.float32)
    n = jnp.maximum(jnp.sum(w), 1.0)
    term = jnp.sum(w * lt / sharpness * jax.nn.softplus(-sharpness * gap)) / n
    return term, jax.lax.stop_gradient(jnp.sum(w * gap) / n)
