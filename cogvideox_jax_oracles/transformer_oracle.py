"""Test helper: tiny random diffusers CogVideoX transformers and their reference forward."""
from __future__ import annotations

import numpy as np

BASE = dict(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, num_layers=2,
            time_embed_dim=16, text_embed_dim=24, sample_width=6, sample_height=4, sample_frames=9,
            max_text_seq_length=7)
VARIANTS = {
    "2b": dict(),
    "5b": dict(use_rotary_positional_embeddings=True),
    "5b-i2v": dict(use_rotary_positional_embeddings=True, use_learned_positional_embeddings=True, in_channels=8),
    "1.5": dict(use_rotary_positional_embeddings=True, patch_size_t=2, patch_bias=False, sample_frames=17),
    "1.5-i2v": dict(use_rotary_positional_embeddings=True, patch_size_t=2, patch_bias=False, sample_frames=17,
                    in_channels=8, ofs_embed_dim=16),
}


def make_torch_transformer(variant: str, seed: int = 0):
    import torch
    from diffusers import CogVideoXTransformer3DModel

    torch.manual_seed(seed)
    model = CogVideoXTransformer3DModel(**{**BASE, **VARIANTS[variant]}).eval()
    with torch.no_grad():  # zero-initialised layers would hide mapping bugs: perturb everything
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        if hasattr(model.patch_embed, "pos_embedding") and VARIANTS[variant].get("use_learned_positional_embeddings"):
            model.patch_embed.pos_embedding.add_(torch.randn_like(model.patch_embed.pos_embedding) * 0.1)
    return model


def reference_rope(model, latent_t: int, latent_h: int, latent_w: int):
    """The pipeline's own RoPE preparation (what diffusers passes as image_rotary_emb)."""
    from diffusers import CogVideoXPipeline

    if not model.config.use_rotary_positional_embeddings:
        return None
    fake = CogVideoXPipeline.__new__(CogVideoXPipeline)
    object.__setattr__(fake, "vae_scale_factor_spatial", 8)
    fake.__dict__["transformer"] = model
    return CogVideoXPipeline._prepare_rotary_positional_embeddings(fake, latent_h * 8, latent_w * 8, latent_t, "cpu")


def reference_forward(model, latents, text, timestep, ofs=None):
    """latents in our layout (B, t, h, w, C) -> reference output in our layout."""
    import torch

    b, t, h, w, c = latents.shape
    x = torch.from_numpy(np.ascontiguousarray(latents.transpose(0, 1, 4, 2, 3)))
    rope = reference_rope(model, t, h, w)
    with torch.no_grad():
        out = model(hidden_states=x, encoder_hidden_states=torch.from_numpy(text), timestep=torch.from_numpy(timestep),
                    ofs=None if ofs is None else torch.from_numpy(ofs), image_rotary_emb=rope, return_dict=False)[0]
    return out.numpy().transpose(0, 1, 3, 4, 2)
