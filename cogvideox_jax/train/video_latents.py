"""Training on videos: the data pipeline's pixel batches encoded on the fly by the frozen VAE and T5.

``frozen_encoders(pretrained_root)`` loads ``vae/``, ``text_encoder/`` and ``tokenizer/`` of a
diffusers CogVideoX folder (torch-free converters) or a ``convert`` checkpoint and returns jitted
``encode_video(video (B,T,H,W,3) in [-1,1]) -> scaled latents`` (``models/vae/latent_scaling.py``; posterior mode —
deterministic, so resumed runs replay exactly; diffusers finetune/ samples instead) and
``encode_text(prompts) -> (B, L, 4096)``. ``video_data_factory`` plugs
``cogvideox_jax.data.grain_pipeline.make_train_iterator`` (one bucket per stage: the stage's
frames × height × width) into the ``Trainer``; its batches are per process.
"""
from __future__ import annotations

import functools

import jax

from cogvideox_jax.train.latent_batches import EncodedVideoBatches


def frozen_posterior_encoders(pretrained_root: str, *, text_len: int = 226):
    """``(encode_posterior, encode_text, vae_config)``: ``encode_posterior(video) -> (mean, logvar)``
    (unscaled, what ``cogvideox-jax precompute`` stores), the T5 prompt encoder, and the VAE's config
    (its scaling fields). ``pretrained_root``: a diffusers CogVideoX folder or a ``convert`` checkpoint."""
    from cogvideox_jax.compiler_options import memory_optimized
    from cogvideox_jax.models.t5.prompt_encoding import encode_prompts_jit, tokenize_prompts
    from cogvideox_jax.pipeline.components import load_components

    comps = load_components(pretrained_root, names=("vae", "text_encoder"))
    vae, vae_params, t5, t5_params = comps.vae, comps.vae_params, comps.text_encoder, comps.text_encoder_params

    @functools.partial(jax.jit, compiler_options=memory_optimized())
    def encode_posterior(video):
        post = vae.apply({"params": vae_params}, video, method="encode")
        return post.mean, post.logvar

    def encode_text(prompts):
        return encode_prompts_jit(t5, t5_params, tokenize_prompts(comps.tokenizer, list(prompts), text_len))

    return encode_posterior, encode_text, vae.config


def frozen_encoders(pretrained_root: str, *, text_len: int = 226):
    from cogvideox_jax.models.vae.latent_scaling import scale_latents

    enc_post, encode_text, vae_config = frozen_posterior_encoders(pretrained_root, text_len=text_len)

    def encode_video(video):
        return scale_latents(enc_post(video)[0], vae_config)

    return encode_video, encode_text


@functools.lru_cache(maxsize=2)
def _cached_encoders(root: str, text_len: int):
    return frozen_encoders(root, text_len=text_len)


def video_data_factory(cfg, stage_index: int, latent_shape, text_shape, batch_size: int, *, encoders=None,
                       fps: float | None = 8.0, **iterator_kw):
    """A ``Trainer`` data factory: ``cfg.data.path`` = video folder, ``cfg.data.pretrained`` = model root."""
    from cogvideox_jax.data.grain_pipeline import make_train_iterator

    stage = cfg.stages[stage_index]
    per_process = batch_size // jax.process_count()
    source = make_train_iterator(cfg.data.path, f"{stage.num_frames}x{stage.height}x{stage.width}", per_process,
                                 seed=cfg.data.shuffle_seed + stage_index, fps=fps, **iterator_kw)
    enc_v, enc_t = encoders or _cached_encoders(cfg.data.pretrained, cfg.text_len)
    return EncodedVideoBatches(source, enc_v, enc_t, image_conditioned=_image_conditioned(cfg),
                               seed=cfg.seed + stage_index)


def _image_conditioned(cfg) -> bool:
    """Whether the run's transformer (``init_from``'s, else the named preset) is an I2V model (input =
    2 × output channels)."""
    from configs.transformer import PRESETS

    if cfg.init_from:
        from cogvideox_jax.train.init_source import resolve_init, transformer_config

        c = transformer_config(resolve_init(cfg.init_from))
    else:
        c = PRESETS.get(cfg.model)
    return c is not None and c.in_channels == 2 * (c.out_channels or c.in_channels)
