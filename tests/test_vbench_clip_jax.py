"""JAX CLIP port vs transformers CLIPModel (random init, tiny config), loaded torch-free."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax.numpy as jnp  # noqa: E402

from cogvideox_jax.convert.errors import WeightMismatchError  # noqa: E402
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
