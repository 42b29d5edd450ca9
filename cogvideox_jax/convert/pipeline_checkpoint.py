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
import uuid

import jax
import numpy as np

from cogvideox_jax.errors import CheckpointFormatError
from cogvideox_jax.convert.params_checkpoint import restore_params, save_params
from cogvideox_jax.paths import read_json

MARKER = "cogvideox_jax.json"
FORMAT_VERSION = 1
MODEL_COMPONENTS = ("transformer", "vae", "text_encoder")


def is_pipeline_checkpoint(path: str) -> bool:
    return os.path.exists(os.path.join(path, MARKER))


def write_pipeline_checkpoint(out: str, *, configs: dict[str, dict], params: dict, tokenizer_dir: str | None,
                              scheduler_config: dict, dtype: str, variant: str | None = None,
                              progress=None) -> None:
    """Write ``configs``/``params`` (per model component), the tokenizer and scheduler to ``out`` (new, or an
    empty directory).

    Atomic: everything is written to a hidden sibling folder that is renamed to ``out`` once complete (the
    marker written last inside it), and removed if anything fails, so ``out`` never holds a partial
    checkpoint and an error leaves it as it was."""
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise FileExistsError(f"{out!r} exists and is not an empty directory; choose a new --out directory")
    final = os.path.realpath(out)
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(final)}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.makedirs(tmp)
    try:
        _write_checkpoint_files(tmp, configs=configs, params=params, tokenizer_dir=tokenizer_dir,
                                scheduler_config=scheduler_config, dtype=dtype, variant=variant, progress=progress)
        try:
            os.rename(tmp, final)  # replaces ``final`` only if it is an empty directory
        except OSError as e:
            raise FileExistsError(f"cannot move the written checkpoint to {out!r}: {e.strerror or e} (was it "
                                  "created meanwhile?)") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_checkpoint_files(out: str, *, configs, params, tokenizer_dir, scheduler_config, dtype, variant,
                            progress) -> None:
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
    if not os.path.exists(os.path.join(path, MARKER)):
        raise CheckpointFormatError(f"{path!r} is not a cogvideox-jax checkpoint (no {MARKER})")
    marker = read_json(os.path.join(path, MARKER))
    if marker.get("version") != FORMAT_VERSION:
        raise CheckpointFormatError(f"{path!r}: unsupported checkpoint version {marker.get('version')}")
    return marker


def read_component_config(path: str, name: str) -> dict:
    """The ``config.json`` dict of component ``name``; a missing or unreadable one is a
    ``CheckpointFormatError`` naming the file."""
    folder = os.path.join(path, name)
    if not os.path.isdir(folder):
        raise CheckpointFormatError(f"checkpoint {path!r} has no {name}/ component")
    if not os.path.exists(os.path.join(folder, "config.json")):
        raise CheckpointFormatError(f"checkpoint {path!r}: its {name}/ component has no config.json")
    return read_json(os.path.join(folder, "config.json"))


def read_component(path: str, name: str, target=None):
    """``(config dict, params)`` of one component; ``target`` (shape/sharding pytree) optional. A damaged
    params folder (a file truncated, missing or overwritten) is a ``CheckpointFormatError`` naming it."""
    config = read_component_config(path, name)
    folder = os.path.join(path, name, "params")
    try:
        params = restore_params(folder, target)
    except CheckpointFormatError as e:
        raise CheckpointFormatError(
            f"checkpoint {path!r}: its {name}/ component is damaged: {e}. Re-run `cogvideox-jax convert` to "
            "write the checkpoint again") from e
    return config, params


def param_count_and_dtypes(params) -> tuple[int, dict[str, int]]:
    leaves = jax.tree_util.tree_leaves(params)
    dtypes: dict[str, int] = {}
    for x in leaves:
        dtypes[str(np.dtype(x.dtype))] = dtypes.get(str(np.dtype(x.dtype)), 0) + int(np.prod(x.shape))
    return sum(int(np.prod(x.shape)) for x in leaves), dtypes
