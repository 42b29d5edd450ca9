"""The project's own pipeline checkpoint: one directory holding every component.

    CKPT/
      cogvideox_jax.json            format marker: version, dtype, component list, variant
      transformer/config.json       the component's diffusers-style config (what built the module)
      transformer/params/           orbax checkpoint of its params
      vae/...  text_encoder/...     same layout
      tokenizer/                    the tokenizer files, copied
      scheduler/scheduler_config.json

``cogvideox-jax convert --diffusers DIR --out CKPT`` writes it; ``CogVideoXPipeline.from_pretrained``
and ``export`` read it.
"""
from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np

from cogvideox_jax.convert.errors import CheckpointFormatError
from cogvideox_jax.convert.params_checkpoint import restore_params, save_params

MARKER = "cogvideox_jax.json"
FORMAT_VERSION = 1
MODEL_COMPONENTS = ("transformer", "vae", "text_encoder")


def is_pipeline_checkpoint(path: str) -> bool:
    return os.path.exists(os.path.join(path, MARKER))


def write_pipeline_checkpoint(out: str, *, configs: dict[str, dict], params: dict, tokenizer_dir: str | None,
                              scheduler_config: dict, dtype: str, variant: str | None = None,
                              progress=None) -> None:
    """Write ``configs``/``params`` (per model component), the tokenizer and scheduler to ``out``."""
    if os.path.exists(out) and os.listdir(out):
        raise FileExistsError(f"{out!r} exists and is not empty; choose a new --out directory")
    os.makedirs(out, exist_ok=True)
    for name in MODEL_COMPONENTS:
        if name not in params:
            continue
        os.makedirs(os.path.join(out, name), exist_ok=True)
        with open(os.path.join(out, name, "config.json"), "w") as f:
            json.dump(configs[name], f, indent=2, sort_keys=True)
        save_params(os.path.join(out, name, "params"), params[name])
        if progress is not None:
            progress(name)
    if tokenizer_dir is not None:
        shutil.copytree(tokenizer_dir, os.path.join(out, "tokenizer"))
    os.makedirs(os.path.join(out, "scheduler"), exist_ok=True)
    with open(os.path.join(out, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(scheduler_config, f, indent=2, sort_keys=True)
    marker = {"format": "cogvideox-jax", "version": FORMAT_VERSION, "dtype": dtype, "variant": variant,
              "components": [n for n in MODEL_COMPONENTS if n in params]}
    # the marker is written last: a directory without it is an incomplete conversion
    with open(os.path.join(out, MARKER), "w") as f:
        json.dump(marker, f, indent=2)


def read_marker(path: str) -> dict:
    try:
        with open(os.path.join(path, MARKER)) as f:
            marker = json.load(f)
    except FileNotFoundError as e:
        raise CheckpointFormatError(f"{path!r} is not a cogvideox-jax checkpoint (no {MARKER})") from e
    if marker.get("version") != FORMAT_VERSION:
        raise CheckpointFormatError(f"{path!r}: unsupported checkpoint version {marker.get('version')}")
    return marker


def read_component(path: str, name: str, target=None):
    """``(config dict, params)`` of one component; ``target`` (shape/sharding pytree) optional."""
    folder = os.path.join(path, name)
    if not os.path.isdir(folder):
        raise CheckpointFormatError(f"checkpoint {path!r} has no {name}/ component")
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    params = restore_params(os.path.join(folder, "params"), target)
    return config, params


def param_count_and_dtypes(params) -> tuple[int, dict[str, int]]:
    leaves = jax.tree_util.tree_leaves(params)
    dtypes: dict[str, int] = {}
    for x in leaves:
        dtypes[str(np.dtype(x.dtype))] = dtypes.get(str(np.dtype(x.dtype)), 0) + int(np.prod(x.shape))
    return sum(int(np.prod(x.shape)) for x in leaves), dtypes
