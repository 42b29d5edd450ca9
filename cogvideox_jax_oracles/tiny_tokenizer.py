"""A tiny, locally trained T5-style sentencepiece tokenizer for tests (no downloads).

``make_t5_tokenizer(out_dir)`` trains a sentencepiece *unigram* model on a few hundred generated
English sentences and saves a transformers ``T5Tokenizer`` folder (``tokenizer.json``,
``tokenizer_config.json``, ``special_tokens_map.json`` and the raw ``spiece.model``) loadable with
``AutoTokenizer.from_pretrained(out_dir)`` and ``T5Tokenizer.from_pretrained(out_dir)`` (what the
diffusers CogVideoX pipelines call). Ids follow T5: ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2, no
BOS; ``</s>`` is appended to every sequence. ``len(tokenizer)`` is ``vocab_size + extra_ids`` (a
tiny T5 encoder needs ``vocab_size >= len(tokenizer)``). Deterministic and fast (well under 5 s).

Usage::

    from cogvideox_jax_oracles.tiny_tokenizer import make_t5_tokenizer
    tok_dir = make_t5_tokenizer(tmp_path / "tokenizer")
"""
from __future__ import annotations

_ADJECTIVES = ["red", "blue", "green", "yellow", "white", "black", "small", "large", "old", "young", "bright",
               "dark", "quiet", "happy", "tiny", "golden", "wooden", "shiny", "purple", "orange"]
_NOUNS = ["ball", "cube", "cat", "dog", "tree", "car", "bird", "boat", "man", "girl", "horse", "flower",
          "robot", "train", "kite", "fish", "house", "bicycle", "balloon", "rabbit"]
_VERBS = ["moves slowly across", "jumps over", "rolls along", "flies above", "walks through", "spins around",
          "falls into", "runs toward", "floats near", "sits beside", "dances on", "glides under"]
_PLACES = ["the wooden table", "a quiet street", "the sandy beach", "a snowy mountain", "the city park",
           "a dark forest", "the bright sky", "a calm lake", "the busy market", "an empty room", "the garden",
           "a rainy window"]
_TAILS = ["", " in the morning", " at night", " under the rain", " in slow motion", " with soft light",
          ", camera zooming in", ", cinematic, high quality"]


def _sentences(n: int = 400) -> list[str]:
    """``n`` deterministic caption-like sentences."""
    out = []
    for i in range(n):
        adj, noun = _ADJECTIVES[i % 20], _NOUNS[(i * 7 + i // 20) % 20]
        verb, place, tail = _VERBS[(i * 5) % 12], _PLACES[(i * 11 + i // 12) % 12], _TAILS[(i * 3) % 8]
        article = "An" if adj[0] in "aeiou" else "A"
        out.append(f"{article} {adj} {noun} {verb} {place}{tail}.")
    return out


def make_t5_tokenizer(out_dir, vocab_size: int = 128, extra_ids: int = 0) -> str:
    """Train and save the tiny tokenizer into ``out_dir``; returns ``str(out_dir)``."""
    from cogvideox_jax.models.t5.tokenizer_training import train_t5_tokenizer

    return train_t5_tokenizer(_sentences(), out_dir, vocab_size=vocab_size, extra_ids=extra_ids)
