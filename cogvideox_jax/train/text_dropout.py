"""Caption dropout for classifier-free guidance: with probability p a sample's text embedding is
replaced by the "null" embedding — zeros (SAT, 10 %) or, given ``null``, the encoded empty prompt
(what the pipelines feed as the negative prompt, so training and guidance see the same unconditional input).

(diffusers' finetune/ scripts use no dropout, p = 0.)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def text_keep_mask(key, batch_size: int, rate: float):
    """``(B,)`` bool: the rows ``drop_text`` with the same ``key`` and ``rate`` keeps."""
    if rate <= 0.0:
        return jnp.ones((batch_size,), bool)
    return jax.random.bernoulli(key, 1.0 - rate, (batch_size,))


def drop_text(key, text_emb, rate: float, null=None):
    """Replace whole rows of ``text_emb`` (B, L, D) with ``null`` (L, D) (default zeros) with probability ``rate``."""
    if rate <= 0.0:
        return text_emb
    keep = text_keep_mask(key, text_emb.shape[0], rate)
    null = jnp.zeros_like(text_emb) if null is None else jnp.broadcast_to(jnp.asarray(null, text_emb.dtype),
                                                                          text_emb.shape)
    return jnp.where(keep[:, None, None], text_emb, null)
