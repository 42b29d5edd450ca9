"""Test helper: tiny random diffusers CogVideoX pipeline folders (T2V 2b/5b-style, I2V, 1.5-style),
saved with ``save_pretrained`` - the oracle for the end-to-end parity tests."""
from __future__ import annotations

import numpy as np

from cogvideox_jax_oracles.tiny_tokenizer import make_t5_tokenizer

TINY_T5 = dict(vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
               relative_attention_num_buckets=8, relative_attention_max_distance=16,
               feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False,
               dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
TINY_VAE = dict(block_out_channels=(8, 16, 16, 16), latent_channels=4, layers_per_block=1, norm_num_groups=4,
                down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
                sample_height=32, sample_width=48)
STYLES = {
    # name: (transformer kwargs, scheduler class, snr shift, vae extra)
    "2b": (dict(use_rotary_positional_embeddings=False), "ddim", 3.0, dict(scaling_factor=1.15258426)),
    "5b": (dict(use_rotary_positional_embeddings=True), "dpm", 1.0, dict(scaling_factor=0.7)),
    "5b-i2v": (dict(use_rotary_positional_embeddings=True, use_learned_positional_embeddings=True, in_channels=8),
               "dpm", 1.0, dict(scaling_factor=0.7)),
    "1.5": (dict(use_rotary_positional_embeddings=True, patch_size_t=2, patch_bias=False, sample_frames=17),
            "dpm", 1.0, dict(scaling_factor=0.7, invert_scale_latents=True)),
    "1.5-i2v": (dict(use_rotary_positional_embeddings=True, patch_size_t=2, patch_bias=False, sample_frames=17,
                     in_channels=8, ofs_embed_dim=16), "dpm", 1.0, dict(scaling_factor=0.7, invert_scale_latents=True)),
}


def make_pipeline_folder(root, style: str, seed: int = 0):
    """Build, save and return ``(folder, diffusers_pipeline)`` for a tiny pipeline of ``style``."""
    import torch
    from diffusers import (AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXDPMScheduler,
                           CogVideoXImageToVideoPipeline, CogVideoXPipeline, CogVideoXTransformer3DModel)
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    tkw, sched_kind, shift, vae_extra = STYLES[style]
    torch.manual_seed(seed)
    text_encoder = T5EncoderModel(T5Config(**TINY_T5)).eval()
    vae = AutoencoderKLCogVideoX(**TINY_VAE, **vae_extra).eval()
    kw = dict(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, num_layers=2,
              time_embed_dim=16, text_embed_dim=TINY_T5["d_model"], sample_width=6, sample_height=4,
              sample_frames=9, max_text_seq_length=226)
    kw.update(tkw)
    transformer = CogVideoXTransformer3DModel(**kw).eval()
    with torch.no_grad():  # diffusers zero-inits some output layers: perturb everything so tests can fail
        for p in list(transformer.parameters()) + list(vae.parameters()):
            p.add_(torch.randn_like(p) * 0.05)
    sched_cls = CogVideoXDDIMScheduler if sched_kind == "ddim" else CogVideoXDPMScheduler
    scheduler = sched_cls(snr_shift_scale=shift, prediction_type="v_prediction", rescale_betas_zero_snr=True,
                          timestep_spacing="trailing", clip_sample=False, set_alpha_to_one=True,
                          beta_schedule="scaled_linear")
    tok_dir = make_t5_tokenizer(f"{root}/_tok")
    tokenizer = T5Tokenizer.from_pretrained(tok_dir)
    pipe_cls = CogVideoXImageToVideoPipeline if kw["in_channels"] == 8 else CogVideoXPipeline
    pipe = pipe_cls(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                    scheduler=scheduler)
    folder = f"{root}/{style}"
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder, pipe


def to_torch_latents(latents):
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(latents).transpose(0, 1, 4, 2, 3)))  # (B, t, C, h, w)
