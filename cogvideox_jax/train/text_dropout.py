"""Caption dropout: with probability p a sample's text embedding is replaced by zeros (SAT, 10%).

(SAT zeroes the T5 output; diffusers' finetune/ scripts use no dropout, p = 0.)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def drop_text(key, text_emb, rate: float):
    """Zero whole rows of ``text_emb`` (B, L, D) with probability ``rate``."""
    if rate <= 0.0:
        return text_emb
    keep = jax.random.bernoulli(key, 1.0 - rate, (text_emb.shape[0],))
    return jnp.where(keep[:, None, None], text_emb, jnp.zeros_like(text_emb))
