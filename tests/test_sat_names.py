"""SAT -> diffusers renaming reproduces the diffusers state dict exactly (names, shapes, values)."""
import numpy as np
import pytest

from cogvideox_jax.convert.sat_names import sat_transformer_to_diffusers, sat_vae_to_diffusers
from cogvideox_jax_oracles.sat_inverse import diffusers_transformer_to_sat, diffusers_vae_to_sat

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")


def _np_state(model):
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("variant", ["2b", "5b-i2v", "1.5-i2v"])
def test_sat_transformer_names_roundtrip(variant):
    kw = dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4, num_layers=2,
              time_embed_dim=8, text_embed_dim=16, sample_width=8, sample_height=8, sample_frames=5)
    if variant == "5b-i2v":
        kw.update(in_channels=8, use_rotary_positional_embeddings=True, use_learned_positional_embeddings=True)
    if variant == "1.5-i2v":
        kw.update(in_channels=8, patch_size_t=2, patch_bias=False, use_rotary_positional_embeddings=True,
                  ofs_embed_dim=8, sample_frames=9)
    torch.manual_seed(0)
    model = diffusers.CogVideoXTransformer3DModel(**kw)
    ref = _np_state(model)
    ref = {k: np.random.default_rng(i).standard_normal(v.shape).astype(np.float32)
           for i, (k, v) in enumerate(ref.items())}  # distinct values so a wrong split/permutation fails
    sat = diffusers_transformer_to_sat(ref)
    got = sat_transformer_to_diffusers(sat)
    assert sorted(got) == sorted(ref)
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)


def test_sat_vae_names_roundtrip():
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKLCogVideoX(block_out_channels=(8, 16, 16, 16), latent_channels=4,
                                           norm_num_groups=4, layers_per_block=1)
    ref = _np_state(vae)
    sat = diffusers_vae_to_sat(ref)
    assert any(k.startswith("decoder.up.0.") for k in sat)
    got = sat_vae_to_diffusers(sat)
    assert sorted(got) == sorted(ref)
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
