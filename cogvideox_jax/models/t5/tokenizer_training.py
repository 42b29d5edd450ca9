"""Train a T5-style sentencepiece tokenizer on a list of sentences (no downloads).

``train_t5_tokenizer(sentences, out_dir)`` trains a sentencepiece *unigram* model and saves a
transformers ``T5Tokenizer`` folder (``tokenizer.json``, ``tokenizer_config.json``,
``special_tokens_map.json`` and the raw ``spiece.model``) loadable with ``AutoTokenizer`` — what the
CogVideoX pipelines call. Ids follow T5: ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2, no BOS; ``</s>``
is appended to every sequence. ``len(tokenizer)`` is ``pieces + extra_ids`` (the T5 encoder needs
``vocab_size >= len(tokenizer)``). Deterministic (single-threaded, unshuffled input).
"""
from __future__ import annotations

import io
import os
from typing import Iterable


def train_t5_tokenizer(sentences: Iterable[str], out_dir, vocab_size: int = 128, extra_ids: int = 0,
                       model_type: str = "unigram") -> str:
    """Train and save into ``out_dir``; returns ``str(out_dir)``. ``vocab_size`` is an upper bound
    (a small corpus may support fewer pieces). ``model_type="word"``: one piece per whitespace word
    (for small closed-vocabulary corpora such as templated captions: short, unambiguous sequences;
    words never seen in training map to ``<unk>``)."""
    import sentencepiece as spm
    from transformers import T5Tokenizer

    out_dir = str(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    model = io.BytesIO()  # in-memory corpus and model: no file paths recorded in the proto
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(sentences)),
        model_writer=model,
        model_type=model_type,
        vocab_size=vocab_size,
        hard_vocab_limit=False,
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
