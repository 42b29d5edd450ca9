"""JAX CLIP port vs transformers CLIPModel (random init, tiny config), loaded torch-free."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax.numpy as jnp  # noqa: E402

from cogvideox_jax.errors import WeightMismatchError  # noqa: E402
from cogvideox_jax.eval.vbench.backends.clip_weights import load_clip  # noqa: E402


def _tiny_clip(tmp_path, eos_token_id):
    cfg = transformers.CLIPConfig(
        text_config=dict(
            vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=16, eos_token_id=eos_token_id, bos_token_id=0, pad_token_id=1,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
            image_size=32, patch_size=8, hidden_act="quick_gelu",
        ),
        projection_dim=24,
        logit_scale_init_value=2.6592,
    )
    torch.manual_seed(0)
    model = transformers.CLIPModel(cfg).eval()
    with torch.no_grad():
        model.logit_scale.fill_(4.6052)
    model.save_pretrained(tmp_path, safe_serialization=True)
    return model


@pytest.mark.parametrize("eos_token_id", [98, 2])
def test_clip_jax_matches_transformers(tmp_path, eos_token_id):
    ref = _tiny_clip(tmp_path, eos_token_id)
    module, params, cfg = load_clip(str(tmp_path))
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 90, size=(3, 9))
    ids[:, 0] = 0
    ids[0, 5], ids[1, 8], ids[2, 3] = eos_token_id, eos_token_id, eos_token_id  # EOS at different places
    ids[2, 6] = eos_token_id  # a second EOS: the first one counts (or argmax for eos == 2)
    pix = rng.standard_normal((2, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        out = ref(input_ids=torch.tensor(ids), pixel_values=torch.tensor(pix.transpose(0, 3, 1, 2)))
    logits, txt, img = module.apply({"params": params}, jnp.asarray(ids), jnp.asarray(pix))
    np.testing.assert_allclose(np.asarray(logits), out.logits_per_text.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(txt), out.text_embeds.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(img), out.image_embeds.numpy(), rtol=1e-4, atol=1e-5)
    assert cfg.eos_token_id == eos_token_id


def test_clip_loader_names_missing_tensors(tmp_path):
    from safetensors.numpy import load_file, save_file

    _tiny_clip(tmp_path, 98)
    path = tmp_path / "model.safetensors"
    tensors = load_file(str(path))
    del tensors["visual_projection.weight"]
    tensors["vision_model.extra.weight"] = np.zeros(3, np.float32)
    save_file(tensors, str(path), metadata={"format": "pt"})
    with pytest.raises(WeightMismatchError, match="visual_projection"):
        load_clip(str(tmp_path))


def _bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def _tiny_tokenizer(folder):
    """A byte-level CLIP BPE tokenizer with a 515-token vocabulary (no download needed)."""
    chars = _bytes_to_unicode()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": 256 + i for i, c in enumerate(chars)})
    vocab["oi</w>"] = 512
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = 513, 514
    tok = transformers.CLIPTokenizer(vocab=vocab, merges=[("o", "i</w>")])
    tok.save_pretrained(folder)
    return tok


def test_clip_preprocess_resize_and_center_crop():
    from PIL import Image

    from cogvideox_jax.eval.vbench.backends.clip_similarity import CLIP_MEAN, CLIP_STD, clip_preprocess, resized_size

    assert resized_size(480, 720, 224) == (224, 336)
    assert resized_size(720, 480, 224) == (336, 224)
    assert resized_size(225, 300, 224) == (224, 298)
    frame = np.random.default_rng(0).integers(0, 256, (480, 720, 3)).astype(np.uint8)
    ref = Image.fromarray(frame).resize((336, 224), Image.BICUBIC).crop((56, 0, 280, 224))
    ref = (np.asarray(ref, np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD
    np.testing.assert_allclose(clip_preprocess(frame), ref, atol=1e-6)
    assert clip_preprocess(frame[:224, :224]).shape == (224, 224, 3)


def test_clip_similarity_backend_matches_transformers(tmp_path):
    from cogvideox_jax.eval.vbench.backends.clip_similarity import ClipJaxSimilarity, clip_preprocess

    cfg = transformers.CLIPConfig(
        text_config=dict(vocab_size=515, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=32, eos_token_id=514, bos_token_id=513),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=24,
    )
    torch.manual_seed(0)
    ref = transformers.CLIPModel(cfg).eval()
    ref.save_pretrained(tmp_path, safe_serialization=True)
    tok = _tiny_tokenizer(tmp_path)
    sim = ClipJaxSimilarity(str(tmp_path), batch_size=4)
    frames = np.random.default_rng(0).integers(0, 256, (6, 40, 60, 3)).astype(np.uint8)  # 2 batches, padded
    got = sim.similarities(frames, "Van Gogh style")
    ids = torch.tensor([tok("Van Gogh style")["input_ids"]])
    assert ids[0, -1] == 514
    pix = torch.tensor(np.stack([clip_preprocess(f, 32) for f in frames]).transpose(0, 3, 1, 2))
    with torch.no_grad():
        want = ref(input_ids=ids, pixel_values=pix).logits_per_text[0].numpy() / 100.0
    assert got.shape == (6,)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert sim.info.comparable_to_vbench and sim.info.weights == str(tmp_path)
