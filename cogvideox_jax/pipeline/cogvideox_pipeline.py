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
step from the host; without one it stays one compiled scan), ``max_sequence_length``, ``prompt_embeds`` /
``negative_prompt_embeds``; and one hook for guidance beyond CFG, ``extra_guidance`` (``denoise_loop.py``).
"""
from __future__ import annotations

import functools
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cogvideox_jax.compiler_options import memory_optimized
from cogvideox_jax.diffusion.guidance import guidance_scale_table, uses_guidance
from cogvideox_jax.diffusion.sampler import init_state, scheduler_step
from cogvideox_jax.diffusion.sampling_schedule import make_sampling_schedule
from cogvideox_jax.diffusion.training_targets import add_noise, alphas_cumprod_table
from cogvideox_jax.models.vae.latent_scaling import scale_latents, unscale_latents
from cogvideox_jax.models.vae.posterior import DiagonalGaussian
from cogvideox_jax.models.vae.tiling import TilingConfig, tiled_encode_moments
from cogvideox_jax.pipeline import components as comp
from cogvideox_jax.pipeline.denoise_loop import ExtraGuidance, denoise, denoise_step
from cogvideox_jax.pipeline.frame_rules import plan_frames, plan_video_frames
from cogvideox_jax.pipeline.progress import progress_bar
from cogvideox_jax.pipeline.vae_decoder import VAEDecoder


class CogVideoXPipeline:
    """Holds the converted components (modules + params), the tokenizer and the scheduler config."""

    VAE_DECODE_MODES = ("diffusers", "whole", "context-parallel")
    OUTPUT_TYPES = ("np", "latent")

    def __init__(self, components: "comp.PipelineComponents", *, mesh=None, sequence_parallel: str | None = None,
                 vae_decode: str = "diffusers", vae_tiling: bool | TilingConfig = False):
        """``vae_decode``: ``"diffusers"`` (the reference's 2-latent-frame chunks, GroupNorm per chunk),
        ``"whole"`` (one pass, the SAT behaviour) or ``"context-parallel"`` (``"whole"`` with the latent
        frames split over the mesh's ``sequence`` axis: ``cogvideox_jax/models/vae/context_parallel.py``).

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
    def __call__(self, prompt: str | Sequence[str] | None = None, negative_prompt: str | Sequence[str] = "", image=None,
                 num_frames: int | None = None, height: int | None = None, width: int | None = None,
                 num_inference_steps: int = 50, guidance_scale: float = 6.0, use_dynamic_cfg: bool = False,
                 seed: int | Sequence[int] = 0, latents=None, image_latent_mode: str = "sample", progress: bool = True,
                 *, num_videos_per_prompt: int = 1, output_type: str = "np",
                 callback_on_step_end: Callable | None = None, max_sequence_length: int | None = None, video=None,
                 strength: float = 0.8, vae_tiling: bool | TilingConfig | None = None, prompt_embeds=None,
                 negative_prompt_embeds=None, extra_guidance: ExtraGuidance | None = None):
        """Sample videos; returns float32 ``(B, T, H, W, 3)`` in [0, 1] (``output_type="np"``), or the
        denoised latents ``(B, t, h, w, C)`` before decoding (``output_type="latent"``; 1.5's padding latent
        already dropped; ``pipe.latents_to_video(latents)`` decodes them to the same video).

        ``prompt`` / ``negative_prompt``: a string or one per prompt. ``num_videos_per_prompt`` videos of
        each prompt (prompt-major: B = prompts x num_videos_per_prompt). ``seed``: one int for the call,
        or one per video (``B`` ints): each video then draws its noise from its own seed exactly as a
        call of that video alone with that seed (the batch changes nothing but floating-point noise); with
        ``num_videos_per_prompt`` > 1 also one per prompt: a prompt's videos as a call of that prompt alone.

        ``prompt_embeds`` / ``negative_prompt_embeds`` ``(prompts, L, D)``: T5 embeddings given instead of
        ``prompt`` / ``negative_prompt`` (diffusers' options; repeated ``num_videos_per_prompt`` times).

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

        ``extra_guidance``: K more conditioning rows per video and the function that adds their predictions
        to the guided one (``denoise_loop.ExtraGuidance``; its embeddings cover the call's B videos).

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
        if (prompt is None) == (prompt_embeds is None):
            raise ValueError("give prompt or prompt_embeds (one of them)")
        prompts = ([prompt] if isinstance(prompt, str) else list(prompt)) if prompt_embeds is None else \
            [None] * len(prompt_embeds)
        negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt)
        if len(negatives) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(negatives)} negative prompts")
        nv = int(num_videos_per_prompt)
        seeds = _seed_list(seed, len(prompts), nv)
        if nv > 1:
            prompts, negatives = _repeat(prompts, nv), _repeat(negatives, nv)
            image = _repeat_batch(image, nv, 4)
            video = _repeat_batch(video, nv, 5)
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

        batch = len(prompts)
        do_cfg = uses_guidance(guidance_scale)
        text = _embeds(self, prompts, prompt_embeds, nv, text_len)
        if do_cfg:
            text = jnp.concatenate([_embeds(self, negatives, negative_prompt_embeds, nv, text_len), text])
        num_extra = 0
        if extra_guidance is not None:
            num_extra, rest = divmod(extra_guidance.embeds.shape[0], batch)
            if rest or not num_extra:
                raise ValueError(f"extra_guidance.embeds has {extra_guidance.embeds.shape[0]} rows: K x {batch} "
                                 "(one per video) expected")
            text = jnp.concatenate([text, extra_guidance.embeds])

        if seeds is None:
            key = jax.random.PRNGKey(seed)
            latent_key, noise_key, image_key = jax.random.split(key, 3)
        else:  # one key triple per seed; its videos' rows draw from it as a call of those videos alone
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
            z0 = self._video_latents(video_frames, batch, image_key, image_latent_mode, tiling)
            ac = alphas_cumprod_table(self.components.scheduler_config)
            latents = add_noise(ac, z0, latents, jnp.full((batch,), schedule.timesteps[0], jnp.int32))
        timesteps = np.asarray(schedule.timesteps)
        guidance = jnp.asarray(guidance_scale_table(timesteps, guidance_scale, use_dynamic_cfg), jnp.float32)
        ofs = None if tc.ofs_embed_dim is None else 2.0

        if self.mesh is not None:  # the stack [uncond, cond, extra rows] is split over the batch axes (data, fsdp)
            from cogvideox_jax.parallel.sharded_apply import batch_sharding

            text = jax.device_put(text, batch_sharding(self.mesh, text.shape))
            latents = jax.device_put(latents, batch_sharding(self.mesh, latents.shape))
        combine = None if extra_guidance is None else extra_guidance.combine
        args = (text, guidance, schedule, image_latents, noise_key, None if combine is None else extra_guidance.args)
        if callback_on_step_end is None and not (progress and _persistent_compile_cache()):
            run = self._denoise_fn(do_cfg, image_latents is not None, ofs, progress, num_extra, combine)
            with progress_bar(len(timesteps), enabled=progress):
                latents = run(self.components.transformer_params, latents, *args)
        else:
            latents = self._denoise_on_host(latents, args, timesteps, callback_on_step_end, progress,
                                            self._step_fn(do_cfg, image_latents is not None, ofs, num_extra, combine))
        latents = latents[:, plan.additional_frames:]
        if output_type == "latent":
            return np.asarray(latents, np.float32)
        return self.latents_to_video(latents, tiling)

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

    def _denoise_fn(self, do_cfg: bool, has_image: bool, ofs, progress: bool, num_extra: int = 0, combine=None):
        key = (do_cfg, has_image, ofs, progress, num_extra, combine)
        if key not in self._compiled:
            transformer = self.components.transformer

            def run(params, latents, text, guidance, schedule, image_latents, noise_key, combine_args):
                def model_fn(x, txt, t):
                    kwargs = {} if ofs is None else {"ofs": jnp.full((x.shape[0],), ofs, jnp.float32)}
                    return transformer.apply({"params": params}, x, txt, t, **kwargs)

                return denoise(model_fn, functools.partial(scheduler_step, schedule), init_state(latents), latents,
                               text, schedule.timesteps, guidance, do_cfg=do_cfg, image_latents=image_latents, noise_key=noise_key,
                               progress=progress, num_extra=num_extra, combine=combine, combine_args=combine_args)

            if self.mesh is None:
                self._compiled[key] = jax.jit(run)
            else:  # traced under the mesh + logical rules so the activation constraints apply
                from cogvideox_jax.parallel.sharded_apply import sharded_jit

                self._compiled[key] = sharded_jit(run, self.mesh)
        return self._compiled[key]

    def _step_fn(self, do_cfg: bool, has_image: bool, ofs, num_extra: int = 0, combine=None):
        """One denoising step ``(params, x, state, i, *args) -> (x, state)`` (the scan's body, compiled alone)
        for the host-driven loop of ``callback_on_step_end``."""
        key = ("step", do_cfg, has_image, ofs, num_extra, combine)
        if key not in self._compiled:
            transformer = self.components.transformer

            def step(params, x, state, i, text, guidance, schedule, image_latents, noise_key, combine_args):
                def model_fn(x_in, txt, t):
                    kwargs = {} if ofs is None else {"ofs": jnp.full((x_in.shape[0],), ofs, jnp.float32)}
                    return transformer.apply({"params": params}, x_in, txt, t, **kwargs)

                body = denoise_step(model_fn, functools.partial(scheduler_step, schedule), text, schedule.timesteps,
                                    guidance, do_cfg=do_cfg, image_latents=image_latents, noise_key=noise_key,
                                    num_extra=num_extra, combine=combine, combine_args=combine_args)
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
        tiles when ``tiling`` (default ``self.vae_tiling``) says so (``VAEDecoder``, one per tiling)."""
        vae = self.components.vae
        tiling = self.vae_tiling if tiling is None else self._check_tiling(tiling)
        if self.vae_decode == "context-parallel":
            if "decode" not in self._compiled:
                from cogvideox_jax.models.vae.context_parallel import context_parallel_decode

                fn = lambda p, z: context_parallel_decode(vae, p, unscale_latents(z, vae.config),  # noqa: E731
                                                          self.mesh)
                self._compiled["decode"] = jax.jit(fn, compiler_options=memory_optimized())
            return self._compiled["decode"](self.components.vae_params, latents)
        key = ("decoder", tiling or False)
        if key not in self._compiled:
            self._compiled[key] = VAEDecoder(vae, self.components.vae_params, frame_batching=self.vae_decode,
                                             tiling=tiling or False)
        return self._compiled[key].decode(latents)

    def _video_latents(self, frames, num_videos: int, key, mode: str, tiling):
        """Video-to-video: the scaled VAE latents ``(num_videos, t, h, w, C)`` of ``frames``
        ``(1 or num_videos, T, H, W, 3)`` in [-1, 1] (encoded with the reference's frame batching; one
        video is encoded once and shared, as diffusers does). ``key``: one, or a list of one per equal
        group of videos (each group's draw as a call of its first video alone, shared by the group)."""
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
        else:  # one draw per key, as a call of its videos alone
            z = jnp.concatenate([post.mean[b * rows // len(key)][None] + post.std[b * rows // len(key)][None]
                                 * jax.random.normal(k, (1,) + post.mean.shape[1:], post.mean.dtype)
                                 for b, k in enumerate(key)])
        z = scale_latents(z, vae.config)   # diffusers multiplies by the scaling factor (1.5 too)
        return jnp.broadcast_to(z, (num_videos,) + z.shape[1:]) if z.shape[0] == 1 else \
            jnp.repeat(z, num_videos // z.shape[0], axis=0)

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


def _seed_list(seed, num_prompts: int, per_prompt: int):
    """``None`` for one seed (an int); else the list of one int per video, or (``per_prompt`` > 1) per prompt."""
    if isinstance(seed, (int, np.integer)):
        return None
    seeds = [int(s) for s in seed]
    if len(seeds) not in (num_prompts * per_prompt, num_prompts if per_prompt > 1 else -1):
        raise ValueError(f"seed: one int, or one per video ({num_prompts * per_prompt} = prompts x "
                         f"num_videos_per_prompt){' or one per prompt' if per_prompt > 1 else ''}, got {len(seeds)}")
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


def _embeds(pipe, prompts, given, n: int, text_len):
    """The embeddings ``given`` (one per prompt, repeated ``n`` times), else those of ``prompts`` (already
    repeated) from ``pipe.encode_prompt`` at the model's text length or ``text_len``."""
    if given is not None:
        return jnp.repeat(jnp.asarray(given), n, axis=0) if n > 1 else jnp.asarray(given)
    return pipe.encode_prompt(prompts) if text_len is None else pipe.encode_prompt(prompts, text_len)


def _persistent_compile_cache() -> bool:
    """JAX's persistent compilation cache is configured (``compile_cache.py``; ``--compile-cache``)."""
    return bool(jax.config.jax_compilation_cache_dir)
