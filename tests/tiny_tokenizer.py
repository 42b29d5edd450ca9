"""A tiny, locally trained T5-style sentencepiece tokenizer for tests (no downloads).

``make_t5_tokenizer(out_dir)`` trains a sentencepiece *unigram* model on a few hundred generated
English sentences and saves a transformers ``T5Tokenizer`` folder (``tokenizer.json``,
``tokenizer_config.json``, ``special_tokens_map.json`` and the raw ``spiece.model``) loadable with
``AutoTokenizer.from_pretrained(out_dir)`` and ``T5Tokenizer.from_pretrained(out_dir)`` (what the
diffusers CogVideoX pipelines call). Ids follow T5: ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2, no
BOS; ``</s>`` is appended to every sequence. ``len(tokenizer)`` is ``vocab_size + extra_ids`` (a
tiny T5 encoder needs ``vocab_size >= len(tokenizer)``). Deterministic and fast (well under 5 s).

Usage::

    from tests.tiny_tokenizer import make_t5_tokenizer
    tok_dir = make_t5_tokenizer(tmp_path / "tokenizer")
"""
from __future__ import annotations

import io
import os

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
    import sentencepiece as spm
    from transformers import T5Tokenizer

    out_dir = str(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    model = io.BytesIO()  # in-memory corpus and model: no file paths recorded in the proto
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_sentences()),
        model_writer=model,
        model_type="unigram",
        vocab_size=vocab_size,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        normalization_rule_name="identity",
        character_coverage=1.0,
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    with open(os.path.join(out_dir, "spiece.model"), "wb") as f:
        f.write(model.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = [(sp.id_to_piece(i), float(sp.get_score(i))) for i in range(sp.get_piece_size())]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=extra_ids, model_max_length=512)
    tokenizer.save_pretrained(out_dir)
    return out_dir
