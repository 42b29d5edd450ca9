"""``CogVideoXPipeline``: text-to-video and image-to-video sampling, parity with diffusers.

    pipe = CogVideoXPipeline.from_pretrained("path")   # a diffusers pipeline folder or our checkpoint
    frames = pipe("a red circle moves to the left", num_frames=49, height=480, width=720)
    # float32 (B, T, H, W, 3) in [0, 1]

The whole denoising loop is one compiled ``lax.scan`` per shape (see ``denoise_loop.py``); the VAE
decodes with the reference's frame batching; I2V encodes the conditioning image with the VAE and
channel-concatenates its (scaled, zero-padded) latents.
"""
from __future__ import annotations

import functools
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cogvideox_jax.compiler_options import memory_optimized
from cogvideox_jax.diffusion.guidance import guidance_scale_table
from cogvideox_jax.diffusion.sampler import init_state, scheduler_step
from cogvideox_jax.diffusion.sampling_schedule import make_sampling_schedule
from cogvideox_jax.diffusion.training_targets import alphas_cumprod_table
from cogvideox_jax.models.vae.latent_scaling import scale_latents, unscale_latents
from cogvideox_jax.pipeline import components as comp
from cogvideox_jax.pipeline.candidate_selection import (CandidateSelection, best_candidates, caption_losses,
                                                        relative_prompt_loss)
from cogvideox_jax.pipeline.denoise_loop import denoise
from cogvideox_jax.pipeline.frame_rules import plan_frames
from cogvideox_jax.pipeline.progress import progress_bar


def selection_key(seed: int):
    """The key a ``seed``'s call draws its candidate selection's noise from (``N > 1``)."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), 3)


class CogVideoXPipeline:
    """Holds the converted components (modules + params), the tokenizer and the scheduler config."""

    VAE_DECODE_MODES = ("diffusers", "whole", "context-parallel")

    def __init__(self, components: "comp.PipelineComponents", *, mesh=None, sequence_parallel: str | None = None,
                 vae_decode: str = "diffusers"):
        """``vae_decode``: ``"diffusers"`` (the reference's 2-latent-frame chunks, GroupNorm per chunk),
        ``"whole"`` (one pass, the SAT behaviour) or ``"context-parallel"`` (``"whole"`` with the latent
        frames split over the mesh's ``sequence`` axis: ``parallel/context_parallel_vae.py``)."""
        if vae_decode not in self.VAE_DECODE_MODES:
            raise ValueError(f"vae_decode must be one of {self.VAE_DECODE_MODES}, got {vae_decode!r}")
        if vae_decode == "context-parallel" and (mesh is None or mesh.shape.get("sequence", 1) == 1):
            raise ValueError("vae_decode='context-parallel' needs a mesh with a sequence axis > 1 "
                             "(e.g. --mesh sequence=4)")
        self.components = components
        self.mesh = mesh
        self.sequence_parallel = sequence_parallel
        self.vae_decode = vae_decode
        self._compiled = {}

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, path: str, *, dtype=jnp.float32, param_dtype=jnp.float32, mesh=None,
                        sequence_parallel: str | None = None, vae_decode: str = "diffusers", lora=None,
                        lora_scale=1.0, lora_ignore_unmatched: bool = False) -> "CogVideoXPipeline":
        """Load a diffusers pipeline folder (``model_index.json``) or a checkpoint written by
        ``cogvideox-jax convert`` (local, or on cloud storage: ``gs://…`` is copied to the local cache).

        ``lora``: a diffusers / PEFT LoRA file or folder (or a list of them), merged into the transformer's
        weights once here (``convert/lora_files.py``: no per-step cost; sharded like the weights) with
        ``lora_scale`` (one scale, or one per LoRA) times its own alpha / rank; modules that match none of
        the transformer's are an error listing them unless ``lora_ignore_unmatched``."""
        loras = [] if lora is None else [lora] if isinstance(lora, (str, os.PathLike)) else list(lora)
        scales = list(lora_scale) if isinstance(lora_scale, (list, tuple)) else [lora_scale] * len(loras)
        if len(scales) != len(loras):
            raise ValueError(f"{len(loras)} LoRAs but {len(scales)} lora_scale values")
        components = comp.load_components(comp.local_pipeline(path), dtype=dtype, param_dtype=param_dtype)
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
        return cls(components, mesh=mesh, sequence_parallel=sequence_parallel, vae_decode=vae_decode)

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
    def encode_prompt(self, prompts: Sequence[str]):
        """T5 embeddings ``(B, L, D)`` of prompts padded/truncated to the model's text length."""
        return comp.encode_text(self.components, list(prompts), self.transformer_config.max_text_seq_length)

    # ----------------------------------------------------------------------------- sampling
    def __call__(self, prompt: str | Sequence[str], negative_prompt: str | Sequence[str] = "", image=None,
                 num_frames: int | None = None, height: int | None = None, width: int | None = None,
                 num_inference_steps: int = 50, guidance_scale: float = 6.0, use_dynamic_cfg: bool = False,
                 seed: int = 0, latents=None, image_latent_mode: str = "sample", progress: bool = True,
                 contrast_prompts: Sequence[Sequence[str]] | None = None, contrast_scale: float = 0.0,
                 selection: CandidateSelection | None = None):
        """Sample videos; returns float32 ``(B, T, H, W, 3)`` in [0, 1].

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
        a posterior sample of the encoded image) or ``"mode"`` (its mean).
        """
        n_train = self.components.scheduler_config.num_train_timesteps
        if not 1 <= num_inference_steps <= n_train:
            raise ValueError(f"num_inference_steps must be in [1, {n_train}], got {num_inference_steps}")
        if not guidance_scale >= 0:  # also NaN; CFG is applied when guidance_scale > 1
            raise ValueError(f"guidance_scale must be >= 0 (CFG is applied when > 1), got {guidance_scale}")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt)
        if len(negatives) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(negatives)} negative prompts")
        f0, h0, w0 = self.default_size()
        num_frames, height, width = num_frames or f0, height or h0, width or w0
        tc = self.transformer_config
        vc = self.vae_config
        plan = plan_frames(num_frames, height, width, patch_size=tc.patch_size, patch_size_t=tc.patch_size_t,
                           temporal_compression=int(vc.temporal_compression_ratio),
                           spatial_compression=vc.spatial_compression)
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
        cond_text, contrast_text, contrast_mask = self._candidate_texts(prompts, contrast_prompts, n, contrast_scale)
        text = cond_text
        if do_cfg:
            text = jnp.concatenate([jnp.repeat(self.encode_prompt(negatives), n, axis=0), cond_text])
        num_contrast = 0 if contrast_mask is None or contrast_scale == 0.0 else contrast_mask.shape[0]
        if num_contrast:
            text = jnp.concatenate([text, contrast_text.reshape((-1,) + contrast_text.shape[2:])])

        key = jax.random.PRNGKey(seed)
        latent_key, noise_key, image_key = jax.random.split(key, 3)
        c_lat = self.vae_config.latent_channels
        shape = (batch, plan.padded_latent_frames, plan.latent_height, plan.latent_width, c_lat)
        if latents is None:
            latents = jax.random.normal(latent_key, shape, jnp.float32)
        else:
            latents = jnp.asarray(latents, jnp.float32)
            if latents.shape != shape:
                raise ValueError(f"latents must have shape {shape} (B, t, h, w, C) for this request, got {latents.shape}")

        image_latents = None
        if image is not None:
            if image_latent_mode not in ("sample", "mode"):
                raise ValueError(f"image_latent_mode must be 'sample' or 'mode', got {image_latent_mode!r}")
            image_latents = self._image_latents(image, batch, plan, image_key, image_latent_mode)

        schedule = make_sampling_schedule(self.components.scheduler_config, num_inference_steps)
        timesteps = np.asarray(schedule.timesteps)
        guidance = jnp.asarray(guidance_scale_table(timesteps, guidance_scale, use_dynamic_cfg), jnp.float32)
        ofs = None if tc.ofs_embed_dim is None else 2.0
        contrast = jnp.full((len(timesteps),), contrast_scale, jnp.float32)

        run = self._denoise_fn(do_cfg, image_latents is not None, ofs, progress, num_contrast)
        if self.mesh is not None:  # the stack [uncond, cond, contrasts] is split over the batch axes (data, fsdp)
            from cogvideox_jax.parallel.sharded_apply import batch_sharding

            text = jax.device_put(text, batch_sharding(self.mesh, text.shape))
            latents = jax.device_put(latents, batch_sharding(self.mesh, latents.shape))
        with progress_bar(len(timesteps), enabled=progress):
            latents = run(self.components.transformer_params, latents, text, guidance, schedule, image_latents,
                          noise_key, contrast, contrast_mask)
        if n > 1:
            latents = self._select_candidates(latents, cond_text, contrast_text, contrast_mask, selection,
                                              selection_key(seed))
        latents = latents[:, plan.additional_frames:]
        video = self.decode_latents(latents)
        return np.asarray(jnp.clip(video / 2 + 0.5, 0.0, 1.0), np.float32)

    def _contrast_batch(self, prompts, contrast_prompts, contrast_scale: float):
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
        return self.encode_prompt([q for row in padded for q in row]), jnp.asarray(mask)

    def _candidate_texts(self, prompts, contrast_prompts, n: int, contrast_scale: float):
        """Each text encoded once and repeated for its ``n`` candidates (prompt-major): the prompts
        ``(B * n, L, D)``, their contrast prompts ``(K, B * n, L, D)`` and mask ``(K, B * n)``
        (``_contrast_batch``; encoded whenever the selection needs them, ``n`` > 1)."""
        cond = jnp.repeat(self.encode_prompt(prompts), n, axis=0)
        contrast, mask = self._contrast_batch(prompts, contrast_prompts, 1.0 if n > 1 else contrast_scale)
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
        with no contrast prompts, the first candidate."""
        if contrast_text is None:
            return latents[::selection.candidates]
        relative, _ = self.candidate_scores(latents, cond_text, contrast_text, contrast_mask, selection, key)
        return latents[best_candidates(relative, selection.candidates)]

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

    # ----------------------------------------------------------------------------- VAE
    def decode_latents(self, latents):
        """Latents ``(B, t, h, w, C)`` (scaled) -> video in [-1, 1], decoded as ``self.vae_decode`` says."""
        vae = self.components.vae
        if "decode" not in self._compiled:
            if self.vae_decode == "context-parallel":
                from cogvideox_jax.parallel.context_parallel_vae import context_parallel_decode

                fn = lambda p, z: context_parallel_decode(vae, p, unscale_latents(z, vae.config),  # noqa: E731
                                                          self.mesh)
            else:
                fn = lambda p, z: vae.apply({"params": p}, unscale_latents(z, vae.config),  # noqa: E731
                                            frame_batching=self.vae_decode, method="decode")
            self._compiled["decode"] = jax.jit(fn, compiler_options=memory_optimized())
        return self._compiled["decode"](self.components.vae_params, latents)

    def _image_latents(self, image, batch: int, plan, key, mode: str):
        """I2V conditioning: encode the image as a 1-frame video, scale like the reference, pad with
        zero latents to the padded latent length (1.5: the reference's leading-frame handling)."""
        vae = self.components.vae
        img = comp.preprocess_image(image, plan.height, plan.width)  # (H, W, 3) or (B, H, W, 3) in [-1, 1]
        if img.ndim == 3:
            img = np.broadcast_to(img, (batch,) + img.shape)
        video = jnp.asarray(img, jnp.float32)[:, None]  # (B, 1, H, W, 3)
        post = vae.apply({"params": self.components.vae_params}, video, method="encode")
        z = post.sample(key) if mode == "sample" else post.mode()
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
