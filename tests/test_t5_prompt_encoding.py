"""Prompt tokenization/encoding vs diffusers' CogVideoX ``_get_t5_prompt_embeds`` (tiny tokenizer + tiny T5)."""
import os
import types
import warnings

import chex
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("sentencepiece")

from cogvideox_jax.convert import load_diffusers  # noqa: E402
from cogvideox_jax.models.t5 import (  # noqa: E402
    PromptTruncatedWarning,
    encode_prompts,
    encode_text,
    load_tokenizer,
    tokenize_prompts,
)
from cogvideox_jax_oracles.tiny_tokenizer import _sentences, make_t5_tokenizer  # noqa: E402

SHORT = ["A red ball rolls along the garden.", "", "An orange kite flies above a calm lake at night."]
LONG = [" ".join(_sentences(6)), "A tiny cat.", " ".join(_sentences(3)) + " zebra!"]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return make_t5_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer")


@pytest.fixture(scope="module")
def text_encoder(tokenizer_dir, tmp_path_factory):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    model = T5EncoderModel(T5Config(
        vocab_size=128, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
        relative_attention_num_buckets=16, relative_attention_max_distance=20,
        feed_forward_proj="gated-gelu", dropout_rate=0.0)).eval()
    with torch.no_grad():
        model.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight.normal_(0.0, 1.0)
    folder = str(tmp_path_factory.mktemp("te") / "text_encoder")
    model.save_pretrained(folder, safe_serialization=True)
    return model, folder


def _diffusers_t5_embeds(tokenizer, model, prompts, max_length):
    """Run the pipeline's own ``_get_t5_prompt_embeds`` on a stand-in ``self`` recording the ids."""
    from diffusers import CogVideoXPipeline

    seen = {}

    def text_encoder(ids):
        seen["ids"] = ids.numpy()
        with torch.no_grad():
            return (model(ids).last_hidden_state,)

    fake = types.SimpleNamespace(tokenizer=tokenizer, text_encoder=text_encoder, _execution_device=torch.device("cpu"))
    embeds = CogVideoXPipeline._get_t5_prompt_embeds(
        fake, prompts, max_sequence_length=max_length, device=torch.device("cpu"), dtype=torch.float32
    )
    return seen["ids"], embeds.numpy()


def test_tiny_tokenizer_is_t5_like_and_deterministic(tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer, T5Tokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    slow_name = T5Tokenizer.from_pretrained(tokenizer_dir)  # what diffusers' pipelines call
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert 100 <= len(tok) <= 200
    ids = tok("A red ball.").input_ids
    assert ids[-1] == 1 and 0 not in ids and slow_name("A red ball.").input_ids == ids
    assert tok.decode(ids, skip_special_tokens=True) == "A red ball."
    again = make_t5_tokenizer(tmp_path / "again")
    for name in ("tokenizer.json", "spiece.model"):
        assert open(os.path.join(again, name), "rb").read() == open(os.path.join(tokenizer_dir, name), "rb").read()


@pytest.mark.parametrize("max_length", [40, 226])
def test_short_prompts_match_pipeline_ids_and_embeds(tokenizer_dir, text_encoder, max_length):
    model, folder = text_encoder
    tok = load_tokenizer(tokenizer_dir)
    ref_ids, ref_embeds = _diffusers_t5_embeds(tok, model, SHORT, max_length)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PromptTruncatedWarning)
        ids = tokenize_prompts(tok, SHORT, max_length=max_length)
    chex.assert_shape(ids, (3, max_length))
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, ref_ids)
    assert ids[1, 0] == 1 and not ids[1, 1:].any()  # the empty (negative) prompt: EOS then padding
    module, params = load_diffusers(folder)
    embeds = encode_text(tok, module, params, SHORT, max_length=max_length)
    chex.assert_shape(embeds, (3, max_length, 32))
    err = float(jnp.max(jnp.abs(embeds - ref_embeds)) / np.max(np.abs(ref_embeds)))
    assert err <= 1e-4, err


def test_too_long_prompts_truncate_like_pipeline_and_warn(tokenizer_dir, text_encoder):
    model, folder = text_encoder
    tok = load_tokenizer(tokenizer_dir)
    max_length = 32
    ref_ids, ref_embeds = _diffusers_t5_embeds(tok, model, LONG, max_length)
    with pytest.warns(PromptTruncatedWarning) as record:
        ids = tokenize_prompts(tok, LONG, max_length=max_length)
    np.testing.assert_array_equal(ids, ref_ids)
    assert (ids[:, -1][[0, 2]] == 1).all()  # truncated rows still end with EOS
    message = str(record[0].message)
    full = tok(LONG[0]).input_ids
    removed = tok.decode(full[max_length - 1 : -1], skip_special_tokens=True)
    assert removed and removed in message and "zebra" in message
    assert "A tiny cat" not in message  # the untruncated prompt is not named
    module, params = load_diffusers(folder)
    err = float(jnp.max(jnp.abs(encode_prompts(module, params, ids) - ref_embeds)) / np.max(np.abs(ref_embeds)))
    assert err <= 1e-4, err


def test_single_string_prompt(tokenizer_dir):
    tok = load_tokenizer(tokenizer_dir)
    a = tokenize_prompts(tok, "A red ball.", max_length=12)
    chex.assert_shape(a, (1, 12))
    np.testing.assert_array_equal(a, tokenize_prompts(tok, ["A red ball."], max_length=12))
