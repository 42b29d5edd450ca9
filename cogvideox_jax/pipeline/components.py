"""The pipeline's components (modules + params, tokenizer, scheduler config), and how they are loaded:
from a diffusers pipeline folder (``model_index.json``) or from the project's own checkpoint
(``cogvideox_jax.json``, written by ``cogvideox-jax convert``).

Every component kind is described once in ``COMPONENT_KINDS``: how to build its config from a
diffusers/transformers ``config.json``, its Linen module, its torch-free diffusers loader, and a dummy
input for shape inference.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from configs.scheduler import SchedulerConfig
from configs.t5 import T5Config
from configs.transformer import TransformerConfig
from configs.vae import VAEConfig
from cogvideox_jax.convert import pipeline_checkpoint as ckpt
from cogvideox_jax.errors import CheckpointFormatError
from cogvideox_jax.convert.host_arrays import as_aligned
from cogvideox_jax.convert.safetensors_io import read_config
from cogvideox_jax.convert.t5 import load_t5
from cogvideox_jax.convert.transformer import load_transformer
from cogvideox_jax.convert.vae import load_vae
from cogvideox_jax.models.t5.t5_encoder import T5EncoderModel
from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D
from cogvideox_jax.models.transformer.transformer_3d import dummy_inputs as transformer_dummy_inputs
from cogvideox_jax.models.vae.autoencoder import AutoencoderKLCogVideoX


@dataclasses.dataclass(frozen=True)
class ComponentKind:
    config_from: Callable    # config.json dict -> config (a config class's classmethod)
    module_cls: type         # Linen module taking (config, dtype, param_dtype)
    loader: Callable         # (folder, dtype=, param_dtype=) -> (module, params)
    dummy_inputs: Callable   # config -> tuple of init inputs

    def build(self, config_json: dict, dtype, param_dtype):
        return self.module_cls(self.config_from(config_json), dtype=dtype, param_dtype=param_dtype)


def _vae_inputs(cfg):
    s = cfg.spatial_compression
    return (jnp.zeros((1, 1, s, s, cfg.in_channels), jnp.float32),)


def _t5_inputs(cfg):
    return (jnp.zeros((1, 2), jnp.int32),)


COMPONENT_KINDS = {
    "transformer": ComponentKind(TransformerConfig.from_diffusers_config, CogVideoXTransformer3D, load_transformer,
                                 transformer_dummy_inputs),
    "vae": ComponentKind(VAEConfig.from_diffusers_config, AutoencoderKLCogVideoX, load_vae, _vae_inputs),
    "text_encoder": ComponentKind(T5Config.from_hf_config, T5EncoderModel, load_t5, _t5_inputs),
}


@dataclasses.dataclass
class PipelineComponents:
    transformer: Any
    transformer_params: Any
    vae: Any
    vae_params: Any
    text_encoder: Any
    text_encoder_params: Any
    tokenizer: Any
    tokenizer_dir: str | None
    scheduler_config: SchedulerConfig
    source_configs: dict  # component name -> the config.json dict it was built from

    def params(self, name: str):
        return getattr(self, f"{name}_params")

    def module(self, name: str):
        return getattr(self, name)


def is_diffusers_pipeline(path: str) -> bool:
    return os.path.exists(os.path.join(path, "model_index.json"))


def local_pipeline(path: str, names: tuple[str, ...] = tuple(COMPONENT_KINDS), *, revision: str | None = None) -> str:
    """``path`` itself when local; a pipeline folder on cloud storage (``gs://…``) copied once to the local
    cache (``paths.localize``), with only the components in ``names`` plus the tokenizer and scheduler; a
    Hugging Face Hub id (``org/name``, no local folder of that name) resolved to its snapshot in the HF
    cache, downloading only the files those components need (``pipeline/hub.py``; ``revision``)."""
    from cogvideox_jax import paths
    from cogvideox_jax.pipeline import hub

    if hub.is_hub_id(path):
        return hub.snapshot(path, names, revision=revision)
    return paths.localize(path, ["model_index.json", ckpt.MARKER, "sampling.json", "tokenizer", "scheduler", *names])


def sampling_defaults(checkpoint: str) -> dict:
    """The sampling settings stored with a checkpoint in ``sampling.json`` (``{"steps": ...,
    "guidance_scale": ..., ...}``; empty when absent)."""
    path = os.path.join(checkpoint, "sampling.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def load_components(path: str, *, dtype=jnp.float32, param_dtype=jnp.float32, progress=None,
                    transformer_overrides: dict | None = None,
                    names: tuple[str, ...] = tuple(COMPONENT_KINDS)) -> PipelineComponents:
    """Load every component (or those in ``names``; the others are ``None``) from a diffusers pipeline
    folder or a cogvideox-jax checkpoint, with the tokenizer and the scheduler config.

    ``transformer_overrides``: execution options for the transformer config (e.g. ``scan_layers``).
    """
    overrides = {"transformer": dict(transformer_overrides or {})}
    from cogvideox_jax.models.t5.prompt_encoding import load_tokenizer

    if ckpt.is_pipeline_checkpoint(path):
        ckpt.read_marker(path)
        loaded, configs = {}, {}
        for name, kind in COMPONENT_KINDS.items():
            if name not in names:
                continue
            configs[name] = ckpt.read_component_config(path, name)
            module = kind.build({**configs[name], **overrides.get(name, {})}, dtype, param_dtype)
            _, params = ckpt.read_component(path, name)
            if name == "transformer":
                params = relayout_blocks(params, module.config.scan_layers)
            params = jax.tree_util.tree_map(lambda x: as_aligned(x, param_dtype), params)  # used in place by XLA:CPU
            loaded[name] = (module, params)
            if progress:
                progress(name)
    elif is_diffusers_pipeline(path) or all(os.path.exists(os.path.join(path, n, "config.json")) for n in names):
        # a diffusers pipeline folder, or a folder holding just the components asked for
        loaded, configs = {}, {}
        for name, kind in COMPONENT_KINDS.items():
            if name not in names:
                continue
            folder = os.path.join(path, name)
            configs[name] = read_config(folder)
            loaded[name] = kind.loader(folder, dtype=dtype, param_dtype=param_dtype, **overrides.get(name, {}))
            if progress:
                progress(name)
    else:
        raise CheckpointFormatError(
            f"{path!r} is neither a diffusers pipeline folder (model_index.json) nor a cogvideox-jax "
            f"checkpoint ({ckpt.MARKER}); convert one with `cogvideox-jax convert`")
    tok_dir = os.path.join(path, "tokenizer")
    none = (None, None)
    return PipelineComponents(
        transformer=loaded.get("transformer", none)[0], transformer_params=loaded.get("transformer", none)[1],
        vae=loaded.get("vae", none)[0], vae_params=loaded.get("vae", none)[1],
        text_encoder=loaded.get("text_encoder", none)[0], text_encoder_params=loaded.get("text_encoder", none)[1],
        tokenizer=load_tokenizer(tok_dir), tokenizer_dir=tok_dir,
        scheduler_config=(SchedulerConfig.from_pretrained(os.path.join(path, "scheduler"))
                          if os.path.isdir(os.path.join(path, "scheduler")) or is_diffusers_pipeline(path)
                          or ckpt.is_pipeline_checkpoint(path) else None),  # a bare encoders folder has none
        source_configs=configs,
    )


def relayout_blocks(params: dict, scan_layers: bool) -> dict:
    """Stack (``transformer_blocks_{i}`` -> ``transformer_blocks``) or unstack the transformer blocks so a
    checkpoint stored in either layout loads into a module of either layout."""
    stacked = "transformer_blocks" in params
    if stacked == scan_layers:
        return params
    params = dict(params)
    if scan_layers:
        n = len([k for k in params if k.startswith("transformer_blocks_")])
        blocks = [params.pop(f"transformer_blocks_{i}") for i in range(n)]
        params["transformer_blocks"] = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *blocks)
    else:
        stack = params.pop("transformer_blocks")
        n = jax.tree_util.tree_leaves(stack)[0].shape[0]
        for i in range(n):
            params[f"transformer_blocks_{i}"] = jax.tree_util.tree_map(lambda x: np.asarray(x)[i], stack)
    return params


def encode_text(components: PipelineComponents, prompts: list[str], max_length: int):
    from cogvideox_jax.models.t5.prompt_encoding import encode_text as t5_encode

    return t5_encode(components.tokenizer, components.text_encoder, components.text_encoder_params, prompts,
                     max_length)


def preprocess_image(image, height: int, width: int) -> np.ndarray:
    """An image (path, PIL image, or (H, W, 3) array: uint8, or float in [0, 1]) -> float32 (H, W, 3)
    in [-1, 1] at ``height`` x ``width`` (resized with PIL's Lanczos filter, as the reference)."""
    from PIL import Image

    if isinstance(image, str):
        image = Image.open(image).convert("RGB")
    if isinstance(image, Image.Image):
        if image.size != (width, height):
            image = image.resize((width, height), Image.LANCZOS)
        arr = np.asarray(image, np.float32) / 255.0
    else:
        arr = np.asarray(image)
        arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
        if arr.shape[-3:-1] != (height, width):
            if arr.ndim != 3:
                raise ValueError(f"image batch must already be {height}x{width}, got {arr.shape}")
            pil = Image.fromarray(np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8))
            arr = np.asarray(pil.resize((width, height), Image.LANCZOS), np.float32) / 255.0
    if arr.shape[-1] != 3:
        raise ValueError(f"image must have 3 channels (RGB), got shape {arr.shape}")
    return arr * 2.0 - 1.0


def preprocess_video(video, height: int, width: int) -> np.ndarray:
    """A video (a file path, a list of frames - PIL images or ``(H, W, 3)`` arrays -, or an array ``(T, H, W, 3)``
    / a batch ``(B, T, H, W, 3)``; uint8, or float in [0, 1]) -> float32 ``(B, T, H, W, 3)`` in [-1, 1] at
    ``height`` x ``width``, each frame resized as ``preprocess_image`` (diffusers' VideoProcessor: Lanczos)."""
    if isinstance(video, (str, os.PathLike)):
        from cogvideox_jax.data.video_io import read_video_uint8

        if not os.path.isfile(video):
            raise FileNotFoundError(f"video {os.fspath(video)!r}: no such file")
        video = read_video_uint8(video)
    if isinstance(video, (list, tuple)):
        frames = [preprocess_image(f, height, width) for f in video]
        if not frames:
            raise ValueError("video has no frames")
        return np.stack(frames)[None]
    arr = np.asarray(video)
    if arr.ndim == 4:
        arr = arr[None]
    if arr.ndim != 5 or arr.shape[-1] != 3:
        raise ValueError(f"video must be (T, H, W, 3) or (B, T, H, W, 3) RGB frames, got shape {arr.shape}")
    if arr.shape[2:4] == (height, width):
        arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
        return arr * 2.0 - 1.0
    return np.stack([np.stack([preprocess_image(f, height, width) for f in v]) for v in arr])


def place_components(components: PipelineComponents, mesh, names=("vae", "text_encoder")) -> PipelineComponents:
    """``components`` with the params of ``names`` put on ``mesh`` (FSDP/tensor shardings from their
    logical axis names, see ``parallel/param_sharding.py``; placed shard by shard)."""
    from cogvideox_jax.parallel.param_sharding import param_shardings, place_params

    placed = {}
    for name in names:
        module = components.module(name)
        inputs = COMPONENT_KINDS[name].dummy_inputs(module.config)
        abstract = jax.eval_shape(module.init, jax.random.PRNGKey(0), *inputs)["params"]
        placed[f"{name}_params"] = place_params(components.params(name), param_shardings(abstract, mesh))
    return dataclasses.replace(components, **placed)


def shard_components(components: PipelineComponents, mesh, *, sequence_parallel: str | None = None
                     ) -> PipelineComponents:
    """Put every component's params on ``mesh`` (``place_components``) and rebuild the transformer
    module with ``mesh`` and ``sequence_parallel`` (``None`` | ``"ulysses"`` | ``"ring"``) so its
    attention runs sequence-parallel when the mesh has a ``sequence`` axis."""
    t = components.transformer
    transformer = type(t)(dataclasses.replace(t.config, sequence_parallel=sequence_parallel), dtype=t.dtype,
                          param_dtype=t.param_dtype, mesh=mesh)
    components = dataclasses.replace(components, transformer=transformer)
    return place_components(components, mesh, ("transformer", "vae", "text_encoder"))
