"""``CogVideoXPipeline``: text-to-video and image-to-video sampling, parity with diffusers.

    pipe = CogVideoXPipeline.from_pretrained("path")   # a diffusers pipeline folder or our checkpoint
    frames = pipe("a red circle moves to the left", num_frames=49, height=480, width=720)
    # float32 (B, T, H, W, 3) in [0, 1]

The whole denoising loop is one compiled ``lax.scan`` per shape (see ``denoise_loop.py``); the VAE
decodes with the reference's frame batching (optionally tiled, ``vae_tiling``); I2V encodes the
conditioning image with the VAE and channel-concatenates its (scaled, zero-padded) latents;
video-to-video (``video=``, ``strength=``) noises the encoded video to the strength's first timestep
and denoises from there, as diffusers' ``CogVideoXVideoToVideoPipeline``.

diffusers' call options: ``num_videos_per_prompt``, lists of prompts / negative prompts, one seed per
video (``seed=[...]``), ``output_type="latent"``, ``callback_on_step_end`` (then the loop runs step by
step from the host; without one it stays one compiled scan), ``max_sequence_length``.
"""
from __future__ import annotations

import functools
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cogvideox_jax.compiler_options import memory_optimized
from cogvideox_jax.diffusion.guidance import guidance_scale_table
from cogvideox_jax.diffusion.sampler import init_state, scheduler_step
from cogvideox_jax.diffusion.sampling_schedule import make_sampling_schedule
from cogvideox_jax.diffusion.training_targets import add_noise, alphas_cumprod_table
from cogvideox_jax.models.vae.latent_scaling import scale_latents, unscale_latents
from cogvideox_jax.models.vae.posterior import DiagonalGaussian
from cogvideox_jax.models.vae.tiling import TilingConfig, tiled_decode, tiled_encode_moments
from cogvideox_jax.pipeline import components as comp
from cogvideox_jax.shapes.candidate_selection import (CandidateSelection, best_candidates, caption_losses,
                                                        relative_prompt_loss)
from cogvideox_jax.pipeline.denoise_loop import denoise, denoise_step
from cogvideox_jax.pipeline.frame_rules import plan_frames, plan_video_frames
from cogvideox_jax.pipeline.progress import progress_bar


def selection_key(seed: int):
    """The key a ``seed``'s call draws its candidate selection's noise from (``N > 1``)."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), 3)


class CogVideoXPipeline:
    """Holds the converted components (modules + params), the tokenizer and the scheduler config."""

    VAE_DECODE_MODES = ("diffusers", "whole", "context-parallel")
    OUTPUT_TYPES = ("np", "latent")

    def __init__(self, components: "comp.PipelineComponents", *, mesh=None, sequence_parallel: str | None = None,
                 vae_decode: str = "diffusers", vae_tiling: bool | TilingConfig = False):
        """``vae_decode``: ``"diffusers"`` (the reference's 2-latent-frame chunks, GroupNorm per chunk),
        ``"whole"`` (one pass, the SAT behaviour) or ``"context-parallel"`` (``"whole"`` with the latent
        frames split over the mesh's ``sequence`` axis: ``parallel/context_parallel_vae.py``).

        ``vae_tiling``: decode (and, for video-to-video, encode) in overlapping spatial tiles blended at
        the seams, as diffusers' ``vae.enable_tiling()``: ``True`` takes diffusers' defaults (tiles of
        half the VAE's sample size, 240 x 360 px, overlap 1/6 of the height and 1/5 of the width), a
        ``TilingConfig`` sets them. Composes with frame batching and with a mesh (not with
        ``"context-parallel"``)."""
        if vae_decode not in self.VAE_DECODE_MODES:
            raise ValueError(f"vae_decode must be one of {self.VAE_DECODE_MODES}, got {vae_decode!r}")
        if vae_decode == "context-parallel" and (mesh is None or mesh.shape.get("sequence", 1) == 1):
            raise ValueError("vae_decode='context-parallel' needs a mesh with a sequence axis > 1 "
                             "(e.g. --mesh sequence=4)")
        self.components = components
        self.mesh = mesh
        self.sequence_parallel = sequence_parallel
        self.vae_decode = vae_decode
        self.vae_tiling = self._check_tiling(vae_tiling)
        self._interrupt = False
        self._compiled = {}

    def _check_tiling(self, tiling):
        if tiling is None or tiling is False:
            return False
        if not (tiling is True or isinstance(tiling, TilingConfig)):
            raise TypeError(f"vae_tiling must be a bool or a TilingConfig, got {type(tiling).__name__}")
        if self.vae_decode == "context-parallel":
            raise ValueError("vae_tiling does not compose with vae_decode='context-parallel' (that mode already "
                             "splits the decode over devices); use vae_decode='diffusers' or 'whole'")
        return tiling

    def enable_vae_tiling(self, tile_sample_min_height: int | None = None, tile_sample_min_width: int | None = None,
                          tile_overlap_factor_height: float | None = None,
                          tile_overlap_factor_width: float | None = None) -> None:
        """Tiled VAE decode / encode from now on (diffusers' ``pipe.vae.enable_tiling(...)``; ``None``: its
        defaults)."""
        given = (tile_sample_min_height, tile_sample_min_width, tile_overlap_factor_height, tile_overlap_factor_width)
        self.vae_tiling = self._check_tiling(TilingConfig(*given) if any(v is not None for v in given) else True)

    def disable_vae_tiling(self) -> None:
        self.vae_tiling = False

    @property
    def interrupt(self) -> bool:
        """Set ``pipe._interrupt = True`` from ``callback_on_step_end`` to skip the remaining steps (diffusers)."""
        return self._interrupt

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, path: str, *, dtype=jnp.float32, param_dtype=jnp.float32, mesh=None,
                        sequence_parallel: str | None = None, vae_decode: str = "diffusers", lora=None,
                        lora_scale=1.0, lora_ignore_unmatched: bool = False,
                        vae_tiling: bool | TilingConfig = False, revision: str | None = None) -> "CogVideoXPipeline":
        """Load a diffusers pipeline folder (``model_index.json``) or a checkpoint written by
        ``cogvideox-jax convert`` (local, or on cloud storage: ``gs://…`` is copied to the local cache),
        or a Hugging Face Hub id (``"THUDM/CogVideoX-5b"``: downloaded through ``huggingface_hub``, only the
        files the pipeline reads, at ``revision``; with ``HF_HUB_OFFLINE=1`` from the local HF cache only;
        a local folder of that name wins, ``pipeline/hub.py``).

        ``param_dtype=jnp.bfloat16`` keeps every weight in bf16 in memory (half of fp32), computing in
        ``dtype``. ``vae_tiling``: see ``__init__``.

        ``lora``: a diffusers / PEFT LoRA file or folder (or a list of them), merged into the transformer's
        weights once here (``convert/lora_files.py``: no per-step cost; sharded like the weights) with
        ``lora_scale`` (one scale, or one per LoRA) times its own alpha / rank; modules that match none of
        the transformer's are an error listing them unless ``lora_ignore_unmatched``."""
        if vae_tiling and vae_decode == "context-parallel":  # checked before the (long) load
            raise ValueError("vae_tiling does not compose with vae_decode='context-parallel' (that mode already "
                             "splits the decode over devices); use vae_decode='diffusers' or 'whole'")
        loras = [] if lora is None else [lora] if isinstance(lora, (str, os.PathLike)) else list(lora)
        from cogvideox_jax import paths

        loras = [paths.localize(x) if isinstance(x, (str, os.PathLike)) else x for x in loras]  # gs:// files
        scales = list(lora_scale) if isinstance(lora_scale, (list, tuple)) else [lora_scale] * len(loras)
        if len(scales) != len(loras):
            raise ValueError(f"{len(loras)} LoRAs but {len(scales)} lora_scale values")
        components = comp.load_components(comp.local_pipeline(path, revision=revision), dtype=dtype,
                                          param_dtype=param_dtype)
        if loras:
            import dataclasses

            from cogvideox_jax.convert.host_arrays import as_aligned
            from cogvideox_jax.convert.lora_files import merge_lora_files

            merged = merge_lora_files(components.transformer_params, components.transformer.config,
                                      list(zip(loras, scales)), ignore_unmatched=lora_ignore_unmatched)
            components = dataclasses.replace(components, transformer_params=jax.tree_util.tree_map(as_aligned, merged))
        if mesh is not None:
            from cogvideox_jax.parallel.mesh import make_mesh

            mesh = make_mesh(mesh)
            components = comp.shard_components(components, mesh, sequence_parallel=sequence_parallel)
        return cls(components, mesh=mesh, sequence_parallel=sequence_parallel, vae_decode=vae_decode,
                   vae_tiling=vae_tiling)

    # ----------------------------------------------------------------------------- properties
    @property
    def transformer_config(self):
        return self.components.transformer.config

    @property
    def vae_config(self):
        return self.components.vae.config

    @property
    def is_i2v(self) -> bool:
        return self.transformer_config.in_channels == 2 * self.vae_config.latent_channels

    def default_size(self):
        c, s = self.transformer_config, self.vae_config.spatial_compression
        return c.sample_frames, c.sample_height * s, c.sample_width * s

    # ----------------------------------------------------------------------------- text
    def encode_prompt(self, prompts: Sequence[str], max_sequence_length: int | None = None):
        """T5 embeddings ``(B, L, D)`` of prompts padded/truncated to ``max_sequence_length`` tokens (default:
        the model's text length, 226)."""
        return comp.encode_text(self.components, list(prompts),
                                max_sequence_length or self.transformer_config.max_text_seq_length)

    def _check_max_sequence_length(self, max_sequence_length):
        """``None`` for the model's own text length; another length only where nothing positional is added
        to the text tokens in the reference's layout (RoPE models: 5b, 1.5)."""
        tc = self.transformer_config
        if max_sequence_length is None or max_sequence_length == tc.max_text_seq_length:
            return None
        if not (isinstance(max_sequence_length, (int, np.integer)) and max_sequence_length >= 1):
            raise ValueError(f"max_sequence_length must be an integer >= 1, got {max_sequence_length!r}")
        if tc.use_learned_positional_embeddings or not tc.use_rotary_positional_embeddings:
            raise ValueError(
                f"max_sequence_length={max_sequence_length}: this model's positional embedding is laid out for "
                f"{tc.max_text_seq_length} text tokens (sin-cos / learned table after the text); only RoPE models "
                "(CogVideoX-5b, 1.5) take another text length")
        return int(max_sequence_length)

    # ----------------------------------------------------------------------------- sampling
    def __call__(self, prompt: str | Sequence[str], negative_prompt: str | Sequence[str] = "", image=None,
                 num_frames: int | None = None, height: int | None = None, width: int | None = None,
                 num_inference_steps: int = 50, guidance_scale: float = 6.0, use_dynamic_cfg: bool = False,
                 seed: int | Sequence[int] = 0, latents=None, image_latent_mode: str = "sample", progress: bool = True,
                 contrast_prompts: Sequence[Sequence[str]] | None = None, contrast_scale: float = 0.0,
                 selection: CandidateSelection | None = None, *, num_videos_per_prompt: int = 1,
                 output_type: str = "np", callback_on_step_end: Callable | None = None,
                 max_sequence_length: int | None = None, video=None, strength: float = 0.8,
                 vae_tiling: bool | TilingConfig | None = None):
        """Sample videos; returns float32 ``(B, T, H, W, 3)`` in [0, 1] (``output_type="np"``), or the
        denoised latents ``(B, t, h, w, C)`` before decoding (``output_type="latent"``; 1.5's padding latent
        already dropped; ``pipe.latents_to_video(latents)`` decodes them to the same video).

        ``prompt`` / ``negative_prompt``: a string or one per prompt. ``num_videos_per_prompt`` videos of
        each prompt (prompt-major: B = prompts x num_videos_per_prompt). ``seed``: one int for the call,
        or one per video (``B`` ints): each video then draws its noise from its own seed exactly as a
        call of that video alone with that seed (the batch changes nothing but floating-point noise).

        ``callback_on_step_end(pipe, step, timestep, {"latents": latents}) -> dict | None`` after every
        denoising step (diffusers' signature; the latents in our ``(B, t, h, w, C)`` layout, 1.5's padding
        latent included); a returned ``{"latents": ...}`` replaces them, and ``pipe._interrupt = True``
        skips the remaining steps. With a callback (or ``progress`` while a persistent compilation cache is
        on, ``_denoise_on_host``) the steps run one compiled step at a time from the host; otherwise the
        loop is a single compiled scan.

        ``max_sequence_length``: the T5 prompt length (default the model's, 226; RoPE models only).

        ``video`` (video-to-video, text-to-video models): a video file, a list of frames (PIL images or
        ``(H, W, 3)`` arrays), or an array ``(T, H, W, 3)`` / one per prompt ``(B, T, H, W, 3)``, uint8 or
        float in [0, 1], resized to ``height`` x ``width``. As diffusers' ``CogVideoXVideoToVideoPipeline``:
        its VAE latents (a posterior sample, or the mean with ``image_latent_mode="mode"``) are noised to
        the first of the last ``int(num_inference_steps * strength)`` timesteps, and only those steps run.
        ``latents`` is then the noise that is added (default: drawn from the seed). The frame count is the
        video's: ``(T - 1) % 4 == 0``, and for 1.5 ``(T - 1) / 4 + 1`` even (an even latent count decodes to
        ``4 x latents`` frames, as in diffusers: 13 -> 16, 85 -> 88; ``frame_rules.py``).

        ``vae_tiling``: this call's tiling (default the pipeline's, ``__init__``).

        ``contrast_prompts``: per prompt, a list of prompts it should be told apart from (e.g. itself
        with its shape word swapped, ``contrast_prompts.py``), used with ``contrast_scale`` w_c > 0:
        the guided prediction gains ``w_c (v(prompt) − mean v(contrasts))``. Not in the reference
        pipeline; off by default (then the sampling is the reference's).

        ``selection``: best-of-N sampling (``candidate_selection.py``): each prompt is sampled
        ``selection.candidates`` times and the candidate its prompt explains best against its
        ``contrast_prompts`` (needed; used at any ``contrast_scale``) is kept. The candidates' noise is
        drawn for the ``B * N`` batch, so with N > 1 a seed gives other samples than with N = 1, and
        ``latents`` must then be ``(B * N, ...)``, prompt-major. Text-to-video only.

        ``latents``: initial noise in our layout ``(B, t, h, w, C)`` - the shape the pipeline would draw
        (for 1.5 including the padding latent frame). ``image_latent_mode``: ``"sample"`` (the reference:
        a posterior sample of the encoded image or video) or ``"mode"`` (its mean).
        """
        n_train = self.components.scheduler_config.num_train_timesteps
        if not 1 <= num_inference_steps <= n_train:
            raise ValueError(f"num_inference_steps must be in [1, {n_train}], got {num_inference_steps}")
        if not guidance_scale >= 0:  # also NaN; CFG is applied when guidance_scale > 1
            raise ValueError(f"guidance_scale must be >= 0 (CFG is applied when > 1), got {guidance_scale}")
        if output_type not in self.OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {self.OUTPUT_TYPES}, got {output_type!r}")
        if not (isinstance(num_videos_per_prompt, (int, np.integer)) and num_videos_per_prompt >= 1):
            raise ValueError(f"num_videos_per_prompt must be an integer >= 1, got {num_videos_per_prompt!r}")
        text_len = self._check_max_sequence_length(max_sequence_length)
        tiling = self.vae_tiling if vae_tiling is None else self._check_tiling(vae_tiling)
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt)
        if len(negatives) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(negatives)} negative prompts")
        if num_videos_per_prompt > 1:
            nv = int(num_videos_per_prompt)
            prompts, negatives = _repeat(prompts, nv), _repeat(negatives, nv)
            if contrast_prompts is not None:
                contrast_prompts = _repeat(list(contrast_prompts), nv)
            image = _repeat_batch(image, nv, 4)
            video = _repeat_batch(video, nv, 5)
        seeds = _seed_list(seed, len(prompts))
        f0, h0, w0 = self.default_size()
        height, width = height or h0, width or w0
        tc = self.transformer_config
        vc = self.vae_config
        frame_kw = dict(patch_size=tc.patch_size, patch_size_t=tc.patch_size_t,
                        temporal_compression=int(vc.temporal_compression_ratio),
                        spatial_compression=vc.spatial_compression)
        video_frames = None
        if video is not None:
            if image is not None:
                raise ValueError("give image= (image-to-video) or video= (video-to-video), not both")
            if self.is_i2v:
                raise ValueError("video= (video-to-video) needs a text-to-video model; this one is image-to-video")
            if not 0.0 < strength <= 1.0:
                raise ValueError(f"strength must be in (0, 1], got {strength}")
            if int(num_inference_steps * strength) < 1:
                raise ValueError(f"strength={strength} x num_inference_steps={num_inference_steps} leaves no "
                                 "denoising step (int(steps * strength) must be >= 1)")
            video_frames = comp.preprocess_video(video, height, width)   # (Bv, T, H, W, 3) in [-1, 1]
            if num_frames is not None and num_frames != video_frames.shape[1]:
                raise ValueError(f"num_frames={num_frames} but the video has {video_frames.shape[1]} frames "
                                 "(video-to-video takes the video's frame count)")
            if video_frames.shape[0] not in (1, len(prompts)):
                raise ValueError(f"{video_frames.shape[0]} videos for {len(prompts)} prompts: give one video, or "
                                 "one per prompt")
            plan = plan_video_frames(video_frames.shape[1], height, width, **frame_kw)
        else:
            plan = plan_frames(num_frames or f0, height, width, **frame_kw)
        if self.is_i2v and image is None:
            raise ValueError("this is an image-to-video model: pass image=")
        if image is not None and not self.is_i2v:
            raise ValueError("image= given but the transformer is text-to-video (in_channels == latent channels)")

        selection = selection or CandidateSelection()
        n = selection.candidates
        if n > 1:
            if image is not None:
                raise ValueError("candidate selection is for text-to-video models (image= was given)")
            if contrast_prompts is None:
                raise ValueError("candidate selection needs contrast_prompts: it scores each candidate under its "
                                 "prompt against them")
        batch = len(prompts) * n
        do_cfg = guidance_scale > 1.0
        cond_text, contrast_text, contrast_mask = self._candidate_texts(prompts, contrast_prompts, n, contrast_scale,
                                                                        text_len)
        text = cond_text
        if do_cfg:
            text = jnp.concatenate([jnp.repeat(_encode(self, negatives, text_len), n, axis=0), cond_text])
        num_contrast = 0 if contrast_mask is None or contrast_scale == 0.0 else contrast_mask.shape[0]
        if num_contrast:
            text = jnp.concatenate([text, contrast_text.reshape((-1,) + contrast_text.shape[2:])])

        if seeds is None:
            key = jax.random.PRNGKey(seed)
            latent_key, noise_key, image_key = jax.random.split(key, 3)
        else:  # one key triple per video; its n candidates' rows draw from it as a call of that video alone
            keys = [jax.random.split(jax.random.PRNGKey(s), 3) for s in seeds]
            latent_key, noise_key, image_key = ([k[j] for k in keys] for j in range(3))
            noise_key = jnp.stack(noise_key)
        c_lat = self.vae_config.latent_channels
        shape = (batch, plan.padded_latent_frames, plan.latent_height, plan.latent_width, c_lat)
        if latents is None:
            latents = _normal(latent_key, shape)
        else:
            latents = jnp.asarray(latents, jnp.float32)
            if latents.shape != shape:
                raise ValueError(f"latents must have shape {shape} (B, t, h, w, C) for this request, got {latents.shape}")

        image_latents = None
        if image_latent_mode not in ("sample", "mode"):
            raise ValueError(f"image_latent_mode must be 'sample' or 'mode', got {image_latent_mode!r}")
        if image is not None:
            image_latents = self._image_latents(image, batch, plan, image_key, image_latent_mode)

        schedule = make_sampling_schedule(self.components.scheduler_config, num_inference_steps)
        if video_frames is not None:  # diffusers' get_timesteps: the last int(N * strength) steps
            start = num_inference_steps - min(int(num_inference_steps * strength), num_inference_steps)
            schedule = _truncate_schedule(schedule, start)
            z0 = self._video_latents(video_frames, len(prompts), n, image_key, image_latent_mode, tiling)
            ac = alphas_cumprod_table(self.components.scheduler_config)
            latents = add_noise(ac, z0, latents, jnp.full((batch,), schedule.timesteps[0], jnp.int32))
        timesteps = np.asarray(schedule.timesteps)
        guidance = jnp.asarray(guidance_scale_table(timesteps, guidance_scale, use_dynamic_cfg), jnp.float32)
        ofs = None if tc.ofs_embed_dim is None else 2.0
        contrast = jnp.full((len(timesteps),), contrast_scale, jnp.float32)

        if self.mesh is not None:  # the stack [uncond, cond, contrasts] is split over the batch axes (data, fsdp)
            from cogvideox_jax.parallel.sharded_apply import batch_sharding

            text = jax.device_put(text, batch_sharding(self.mesh, text.shape))
            latents = jax.device_put(latents, batch_sharding(self.mesh, latents.shape))
        args = (text, guidance, schedule, image_latents, noise_key, contrast, contrast_mask)
        if callback_on_step_end is None and not (progress and _persistent_compile_cache()):
            run = self._denoise_fn(do_cfg, image_latents is not None, ofs, progress, num_contrast)
            with progress_bar(len(timesteps), enabled=progress):
                latents = run(self.components.transformer_params, latents, *args)
        else:
            latents = self._denoise_on_host(latents, args, timesteps, callback_on_step_end, progress,
                                            self._step_fn(do_cfg, image_latents is not None, ofs, num_contrast))
        if n > 1:
            latents = self._select_candidates(latents, cond_text, contrast_text, contrast_mask, selection,
                                              selection_key(seed) if seeds is None else
                                              [selection_key(s) for s in seeds])
        latents = latents[:, plan.additional_frames:]
        if output_type == "latent":
            return np.asarray(latents, np.float32)
        video = self.decode_latents(latents) if vae_tiling is None else self.decode_latents(latents, tiling=tiling)
        return np.asarray(jnp.clip(video / 2 + 0.5, 0.0, 1.0), np.float32)

    def latents_to_video(self, latents, tiling: bool | TilingConfig | None = None):
        """Denoised latents ``(B, t, h, w, C)`` (``output_type="latent"``) -> the float32 ``(B, T, H, W, 3)``
        video in [0, 1] the call would have returned."""
        video = self.decode_latents(jnp.asarray(latents, jnp.float32), tiling=tiling)
        return np.asarray(jnp.clip(video / 2 + 0.5, 0.0, 1.0), np.float32)

    def _denoise_on_host(self, latents, args, timesteps, callback, progress: bool, step):
        """The denoising steps one compiled step at a time, ``callback`` (if any) after each (diffusers'
        contract). Also the loop of ``progress=True`` while JAX's persistent compilation cache is on: the
        scan's per-step progress callback would keep its program out of the cache (JAX stores no program
        with host callbacks), the step's program is stored, and the bar advances as each step finishes.
        (The embedded model's videos are bit-identical either way: tests/test_compile_cache.py.)"""
        x, state = latents, init_state(latents)
        self._interrupt = False
        with progress_bar(len(timesteps), enabled=progress) as bar:
            for i, t in enumerate(timesteps):
                if self._interrupt:
                    continue
                x, state = step(self.components.transformer_params, x, state, jnp.int32(i), *args)
                if progress:
                    x.block_until_ready()
                bar.update(1)
                if callback is None:
                    continue
                out = callback(self, i, int(t), {"latents": x})
                if out and out.get("latents") is not None:
                    new = jnp.asarray(out["latents"], jnp.float32)
                    if new.shape != x.shape:
                        raise ValueError(f"callback_on_step_end returned latents of shape {new.shape}, "
                                         f"expected {x.shape}")
                    x = new if self.mesh is None else jax.device_put(new, x.sharding)
        return x

    def _contrast_batch(self, prompts, contrast_prompts, contrast_scale: float, text_len: int | None = None):
        """``(K*B, L, D)`` contrast embeddings (contrast k of every prompt, k-major; short lists padded
        with the prompt itself) and the ``(K, B)`` mask of real ones; ``(None, None)`` when unused."""
        if contrast_prompts is None or contrast_scale == 0.0:
            return None, None
        lists = [list(c) for c in contrast_prompts]
        if len(lists) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(lists)} contrast prompt lists")
        k = max((len(c) for c in lists), default=0)
        if k == 0:
            return None, None
        padded = [[c[j] if j < len(c) else p for p, c in zip(prompts, lists)] for j in range(k)]
        mask = np.asarray([[float(j < len(c)) for c in lists] for j in range(k)], np.float32)
        return _encode(self, [q for row in padded for q in row], text_len), jnp.asarray(mask)

    def _candidate_texts(self, prompts, contrast_prompts, n: int, contrast_scale: float, text_len: int | None = None):
        """Each text encoded once and repeated for its ``n`` candidates (prompt-major): the prompts
        ``(B * n, L, D)``, their contrast prompts ``(K, B * n, L, D)`` and mask ``(K, B * n)``
        (``_contrast_batch``; encoded whenever the selection needs them, ``n`` > 1)."""
        cond = jnp.repeat(_encode(self, prompts, text_len), n, axis=0)
        contrast, mask = self._contrast_batch(prompts, contrast_prompts, 1.0 if n > 1 else contrast_scale, text_len)
        if mask is None:
            return cond, None, None
        contrast = jnp.repeat(contrast.reshape(mask.shape + contrast.shape[1:]), n, axis=1)
        return cond, contrast, jnp.repeat(mask, n, axis=1)

    def candidate_scores(self, latents, cond_text, contrast_text, contrast_mask, selection, key):
        """The verifier's ``(B * N,)`` relative prompt losses and ``(B * N, 1 + K)`` caption losses of the
        candidates' final ``latents`` (``candidate_selection.py``; texts as ``_candidate_texts``)."""
        if ("select", selection) not in self._compiled:
            transformer = self.components.transformer
            ac = alphas_cumprod_table(self.components.scheduler_config)

            def score(params, x0, text, mask, key):
                fn = lambda x, txt, t: transformer.apply({"params": params}, x, txt, t)  # noqa: E731
                losses = caption_losses(fn, x0, text, ac, selection.timesteps, key, selection.repeats,
                                        selection.object_weight, selection.object_threshold)
                return relative_prompt_loss(losses, mask), losses

            self._compiled[("select", selection)] = jax.jit(score)
        text = jnp.concatenate([cond_text[None], contrast_text])
        return self._compiled[("select", selection)](self.components.transformer_params, latents, text,
                                                      contrast_mask, key)

    def _select_candidates(self, latents, cond_text, contrast_text, contrast_mask, selection, key):
        """Keep each prompt's best of its ``N`` candidates (``(B * N, ...)`` prompt-major -> ``(B, ...)``);
        with no contrast prompts, the first candidate. ``key``: one for the batch, or a list of one per
        prompt (per-video seeds: each prompt's candidates scored as a call of that prompt alone)."""
        if contrast_text is None:
            return latents[::selection.candidates]
        if not isinstance(key, list):
            relative, _ = self.candidate_scores(latents, cond_text, contrast_text, contrast_mask, selection, key)
            return latents[best_candidates(relative, selection.candidates)]
        n, kept = selection.candidates, []
        for b, k in enumerate(key):
            rows = slice(b * n, (b + 1) * n)
            relative, _ = self.candidate_scores(latents[rows], cond_text[rows], contrast_text[:, rows],
                                                contrast_mask[:, rows], selection, k)
            kept.append(latents[rows][best_candidates(relative, n)])
        return jnp.concatenate(kept)

    def _denoise_fn(self, do_cfg: bool, has_image: bool, ofs, progress: bool, num_contrast: int = 0):
        key = (do_cfg, has_image, ofs, progress, num_contrast)
        if key not in self._compiled:
            transformer = self.components.transformer

            def run(params, latents, text, guidance, schedule, image_latents, noise_key, contrast, contrast_mask):
                def model_fn(x, txt, t):
                    kwargs = {} if ofs is None else {"ofs": jnp.full((x.shape[0],), ofs, jnp.float32)}
                    return transformer.apply({"params": params}, x, txt, t, **kwargs)

                return denoise(model_fn, functools.partial(scheduler_step, schedule), init_state(latents), latents,
                               text, schedule.timesteps, guidance, do_cfg=do_cfg, image_latents=image_latents, noise_key=noise_key,
                               progress=progress, num_contrast=num_contrast, contrast=contrast,
                               contrast_mask=contrast_mask)

            if self.mesh is None:
                self._compiled[key] = jax.jit(run)
            else:  # traced under the mesh + logical rules so the activation constraints apply
                from cogvideox_jax.parallel.sharded_apply import sharded_jit

                self._compiled[key] = sharded_jit(run, self.mesh)
        return self._compiled[key]

    def _step_fn(self, do_cfg: bool, has_image: bool, ofs, num_contrast: int = 0):
        """One denoising step ``(params, x, state, i, *args) -> (x, state)`` (the scan's body, compiled alone)
        for the host-driven loop of ``callback_on_step_end``."""
        key = ("step", do_cfg, has_image, ofs, num_contrast)
        if key not in self._compiled:
            transformer = self.components.transformer

            def step(params, x, state, i, text, guidance, schedule, image_latents, noise_key, contrast, contrast_mask):
                def model_fn(x_in, txt, t):
                    kwargs = {} if ofs is None else {"ofs": jnp.full((x_in.shape[0],), ofs, jnp.float32)}
                    return transformer.apply({"params": params}, x_in, txt, t, **kwargs)

                body = denoise_step(model_fn, functools.partial(scheduler_step, schedule), text, schedule.timesteps,
                                    guidance, do_cfg=do_cfg, image_latents=image_latents, noise_key=noise_key,
                                    num_contrast=num_contrast, contrast=contrast, contrast_mask=contrast_mask)
                return body((x, state), i)[0]

            if self.mesh is None:
                self._compiled[key] = jax.jit(step)
            else:
                from cogvideox_jax.parallel.sharded_apply import sharded_jit

                self._compiled[key] = sharded_jit(step, self.mesh)
        return self._compiled[key]

    # ----------------------------------------------------------------------------- VAE
    def decode_latents(self, latents, tiling: bool | TilingConfig | None = None):
        """Latents ``(B, t, h, w, C)`` (scaled) -> video in [-1, 1], decoded as ``self.vae_decode`` says, in
        tiles when ``tiling`` (default ``self.vae_tiling``) says so."""
        vae = self.components.vae
        tiling = self.vae_tiling if tiling is None else self._check_tiling(tiling)
        key = "decode" if not tiling else ("decode", tiling)
        if key not in self._compiled:
            if self.vae_decode == "context-parallel":
                from cogvideox_jax.parallel.context_parallel_vae import context_parallel_decode

                fn = lambda p, z: context_parallel_decode(vae, p, unscale_latents(z, vae.config),  # noqa: E731
                                                          self.mesh)
            elif not tiling:
                fn = lambda p, z: vae.apply({"params": p}, unscale_latents(z, vae.config),  # noqa: E731
                                            frame_batching=self.vae_decode, method="decode")
            else:  # each tile shape compiled once, the tiles one after the other (tiling.py)
                def fn(p, z):
                    decode = lambda t: vae.apply({"params": p}, t, frame_batching=self.vae_decode,  # noqa: E731
                                                 method="decode")
                    return tiled_decode(decode, unscale_latents(z, vae.config), tiling, vae.config)
            self._compiled[key] = jax.jit(fn, compiler_options=memory_optimized())
        return self._compiled[key](self.components.vae_params, latents)

    def _video_latents(self, frames, num_videos: int, n: int, key, mode: str, tiling):
        """Video-to-video: the scaled VAE latents ``(num_videos * n, t, h, w, C)`` of ``frames``
        ``(1 or num_videos, T, H, W, 3)`` in [-1, 1] (encoded with the reference's frame batching; one
        video is encoded once and shared, as diffusers does)."""
        vae = self.components.vae
        ckey = ("encode", tiling or False)
        if ckey not in self._compiled:
            def fn(p, v):
                moments = lambda t: vae.apply({"params": p}, t, "diffusers", None,  # noqa: E731
                                              method=lambda m, x, fb, c: m._encode_moments(x, fb, c))
                return DiagonalGaussian.from_moments(tiled_encode_moments(moments, v, tiling, vae.config)
                                                     .astype(jnp.float32))

            self._compiled[ckey] = jax.jit(fn, compiler_options=memory_optimized())
        post = self._compiled[ckey](self.components.vae_params, jnp.asarray(frames, jnp.float32))
        rows = post.mean.shape[0]
        if mode == "mode":
            z = post.mode()
        elif not isinstance(key, list):
            z = post.sample(key)
        else:  # one draw per video, as a call of that video alone
            z = jnp.concatenate([post.mean[min(b, rows - 1)][None] + post.std[min(b, rows - 1)][None]
                                 * jax.random.normal(k, (1,) + post.mean.shape[1:], post.mean.dtype)
                                 for b, k in enumerate(key)])
        z = scale_latents(z, vae.config)   # diffusers multiplies by the scaling factor (1.5 too)
        z = jnp.broadcast_to(z, (num_videos,) + z.shape[1:]) if z.shape[0] == 1 else z
        return jnp.repeat(z, n, axis=0) if n > 1 else z

    def _image_latents(self, image, batch: int, plan, key, mode: str):
        """I2V conditioning: encode the image as a 1-frame video, scale like the reference, pad with
        zero latents to the padded latent length (1.5: the reference's leading-frame handling)."""
        vae = self.components.vae
        img = comp.preprocess_image(image, plan.height, plan.width)  # (H, W, 3) or (B, H, W, 3) in [-1, 1]
        if img.ndim == 3:
            img = np.broadcast_to(img, (batch,) + img.shape)
        video = jnp.asarray(img, jnp.float32)[:, None]  # (B, 1, H, W, 3)
        post = vae.apply({"params": self.components.vae_params}, video, method="encode")
        if mode == "mode":
            z = post.mode()
        elif not isinstance(key, list):
            z = post.sample(key)
        else:  # per-video seeds: each video's rows drawn from its key, as a call of that video alone
            z = post.mean + post.std * _normal(key, post.mean.shape)
        if getattr(vae.config, "invert_scale_latents", False):  # the 1.5-I2V reference divides
            z = z / vae.config.scaling_factor
        else:
            z = scale_latents(z, vae.config)
        # diffusers: the noise has t' = t + t % p_t latents; image latents are [img, zeros * (t_cond - 1)]
        # where t_cond counts the padding latents already added to num_frames, then for 1.5 the leading
        # t_cond % p_t frames are repeated in front.
        t_cond = plan.padded_latent_frames
        pad = jnp.zeros((batch, t_cond - 1) + z.shape[2:], z.dtype)
        z = jnp.concatenate([z, pad], axis=1)
        pt = self.transformer_config.patch_size_t
        if pt:
            z = jnp.concatenate([z[:, : z.shape[1] % pt], z], axis=1)
        return z


def _repeat(items: list, n: int) -> list:
    """Each item ``n`` times, in order (prompt-major)."""
    return [x for x in items for _ in range(n)]


def _repeat_batch(x, n: int, batched_ndim: int):
    """A per-prompt batch (an array with ``batched_ndim`` dims, or a list of per-prompt items when the
    inner items are themselves batched) repeated ``n`` times per prompt; anything else (one image / video
    shared by all prompts) unchanged."""
    if x is None or isinstance(x, str):
        return x
    if isinstance(x, np.ndarray) or hasattr(x, "shape"):
        return np.repeat(np.asarray(x), n, axis=0) if np.ndim(x) == batched_ndim else x
    return x


def _seed_list(seed, num_videos: int):
    """``None`` for one seed (an int); else the list of one int per video."""
    if isinstance(seed, (int, np.integer)):
        return None
    seeds = [int(s) for s in seed]
    if len(seeds) != num_videos:
        raise ValueError(f"seed: one int, or one per video ({num_videos} = prompts x num_videos_per_prompt), "
                         f"got {len(seeds)}")
    return seeds


def _normal(key, shape):
    """Standard normal ``shape``: from one key, or from a list of keys, one per equal group of rows (each
    group drawn as ``normal(key_g, (rows / G, ...))``)."""
    if not isinstance(key, list):
        return jax.random.normal(key, shape, jnp.float32)
    per = (shape[0] // len(key),) + tuple(shape[1:])
    return jnp.concatenate([jax.random.normal(k, per, jnp.float32) for k in key])


def _truncate_schedule(schedule, start: int):
    """The schedule from step ``start`` on (video-to-video): the first kept step is first-order, as the
    reference's DPM step with no previous x0 (``timesteps[i - 1] if i > 0 else None``)."""
    if start == 0:
        return schedule
    cut = jax.tree_util.tree_map(lambda a: a[start:], schedule)
    return cut.replace(second_order=cut.second_order.at[0].set(False))


def _encode(pipe, prompts, text_len):
    """``pipe.encode_prompt`` at the model's text length (one argument, as stubs in tests take it) or another."""
    return pipe.encode_prompt(prompts) if text_len is None else pipe.encode_prompt(prompts, text_len)


def _persistent_compile_cache() -> bool:
    """JAX's persistent compilation cache is configured (``compile_cache.py``; ``--compile-cache``)."""
    return bool(jax.config.jax_compilation_cache_dir)
