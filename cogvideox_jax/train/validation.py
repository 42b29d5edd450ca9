"""Validation samples while training (``TrainConfig.validation``).

Every ``every_steps`` steps the trainer hands ``Validator.run`` the weights to sample from (the EMA's
when the run keeps one, LoRA merged, on the training mesh); it samples every prompt with
``CogVideoXPipeline`` (the pipeline's own denoising loop and VAE decode, sharded on the same mesh),
writes ``WORKDIR/validation/step_<N>/<i>.mp4`` and a frame strip per video to TensorBoard, and logs
its time (the trainer's step-time metric leaves it out). The VAE, T5, tokenizer and scheduler come
from the run's pipeline (``init_from`` or ``data.pretrained``) and are loaded at the first run.
"""
from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from cogvideox_jax import paths

STRIP_FRAMES = 8   # frames per TensorBoard strip, evenly spaced over the clip


def validation_prompts(vcfg) -> list[str]:
    prompts = list(vcfg.prompts)
    if vcfg.prompts_file:
        prompts += [line.strip() for line in paths.read_text(vcfg.prompts_file).splitlines() if line.strip()]
    return prompts


class Validator:
    """Checks the validation settings now (before any weight is loaded), samples at ``run``."""

    def __init__(self, vcfg, pipeline_root: str | None, spec, mesh, workdir: str):
        self.cfg = vcfg
        self.prompts = validation_prompts(vcfg)
        if not self.prompts:
            raise ValueError("validation.every_steps > 0 needs prompts: validation.prompts (a JSON list with "
                             "--set) or validation.prompts_file")
        module = spec.module
        if not (hasattr(module, "config") and hasattr(module.config, "to_diffusers_config")):
            raise ValueError("validation samples need a CogVideoX transformer model (this run's is "
                             f"{type(module).__name__})")
        if not pipeline_root:
            raise ValueError("validation needs the run's VAE, T5 and tokenizer: --init a diffusers pipeline "
                             "folder or a `convert` checkpoint, or set data.pretrained; or turn it off with "
                             "--set validation.every_steps=0")
        missing = [n for n in ("vae", "text_encoder", "tokenizer", "scheduler")
                   if not paths.exists(paths.join(pipeline_root, n))]
        if missing:
            raise ValueError(f"validation: the pipeline {pipeline_root} has no {', '.join(missing)}/")
        self.image_conditioned = spec.image_conditioned
        if self.image_conditioned and len(vcfg.images) != len(self.prompts):
            raise ValueError(f"validation of an image-to-video model needs one image per prompt: "
                             f"{len(self.prompts)} prompts, {len(vcfg.images)} images (validation.images)")
        if not self.image_conditioned and vcfg.images:
            raise ValueError("validation.images are for image-to-video models; this transformer is text-to-video")
        for image in vcfg.images:
            if not paths.exists(image):
                raise FileNotFoundError(f"validation image {image}: no such file")
        self.pipeline_root = pipeline_root
        self.module = module
        self.mesh = mesh
        self.out_dir = paths.join(workdir, "validation")
        self._pipe = None

    def _pipeline(self):
        if self._pipe is None:
            from cogvideox_jax.pipeline import CogVideoXPipeline
            from cogvideox_jax.pipeline.components import load_components, local_pipeline, place_components

            names = ("vae", "text_encoder")
            comps = load_components(local_pipeline(self.pipeline_root, names), names=names)
            comps = place_components(dataclasses.replace(comps, transformer=self.module), self.mesh)
            self._pipe = CogVideoXPipeline(comps, mesh=self.mesh)
        return self._pipe

    def _images(self, height: int, width: int):
        if not self.image_conditioned:
            return None
        from PIL import Image

        imgs = []
        for path in self.cfg.images:
            with paths.as_path(path).open("rb") as f:
                img = Image.open(f).convert("RGB")
                imgs.append(np.asarray(img.resize((width, height), Image.LANCZOS), np.uint8))
        return np.stack(imgs)

    def run(self, step: int, params, stage, logger=None) -> dict:
        """Sample every prompt from ``params``; returns ``{"time_s", "videos": [paths]}``."""
        v = self.cfg
        t0 = time.perf_counter()
        pipe = self._pipeline()
        pipe.components = dataclasses.replace(pipe.components, transformer_params=params)
        frames, height, width = v.num_frames or stage.num_frames, v.height or stage.height, v.width or stage.width
        video = pipe(self.prompts, negative_prompt=v.negative_prompt, image=self._images(height, width),
                     num_frames=frames, height=height, width=width, num_inference_steps=v.steps,
                     guidance_scale=v.guidance_scale, use_dynamic_cfg=v.use_dynamic_cfg, seed=v.seed, progress=False)
        written = []
        if jax.process_index() == 0:
            folder = paths.join(self.out_dir, f"step_{step}")
            for i, clip in enumerate(video):
                written.append(write_video_to(paths.join(folder, f"{i}.mp4"), clip, v.fps))
        dt = time.perf_counter() - t0
        if logger is not None:
            logger.log_videos(step, "validation", video, {"validation_time_s": dt})
        return {"time_s": dt, "videos": written}


def write_video_to(path: str, frames, fps: float) -> str:
    """An mp4 at a local path or a URL (encoded locally, then copied)."""
    from cogvideox_jax.data.video_io import write_video

    if not paths.is_url(path):
        return write_video(path, frames, fps=fps)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        local = write_video(f"{tmp}/video.mp4", frames, fps=fps)
        paths.write_atomic(path, open(local, "rb").read())
    return path


def frame_strip(video, frames: int = STRIP_FRAMES) -> np.ndarray:
    """``(T, H, W, 3)`` in [0, 1] -> uint8 ``(H, n*W, 3)``: ``n <= frames`` evenly spaced frames side by side."""
    video = np.asarray(video)
    idx = np.unique(np.linspace(0, video.shape[0] - 1, min(frames, video.shape[0])).round().astype(int))
    strip = np.concatenate(list(video[idx]), axis=1)
    return np.clip(np.rint(strip * 255.0), 0, 255).astype(np.uint8)
