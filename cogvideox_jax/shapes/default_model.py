"""The embedded default model: a small CogVideoX trained on the synthetic shapes dataset, shipped
inside the package so ``cogvideox-jax sample --prompt "a red circle moves to the left"`` works on a
fresh install with no downloaded weights.

It is a regular cogvideox-jax pipeline checkpoint (``convert/pipeline_checkpoint.py``) written by
``cogvideox-jax train-shapes --install`` (``cogvideox_jax/shapes/recipe.py``) plus ``sampling.json``, the
step count, guidance scale, contrast guidance (``contrast_prompts.py``) and best-of-N candidate
selection (``candidate_selection.py``) it was evaluated with. ``cogvideox-jax sample`` uses it when given
no model (``sampling.py``).
"""
from __future__ import annotations

import os
import shutil

from cogvideox_jax.shapes.stage_folders import ATTEMPT, DONE, SETTINGS

DEFAULT_MODEL_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "default_model", "shapes")
SKIP = (DONE, SETTINGS, ATTEMPT)  # train-shapes stage bookkeeping, not the model


def default_checkpoint() -> str:
    """Path of the packaged checkpoint; a clear error when this install has none."""
    from cogvideox_jax.convert.pipeline_checkpoint import is_pipeline_checkpoint

    if not is_pipeline_checkpoint(DEFAULT_MODEL_DIR):
        raise FileNotFoundError(
            f"no default model at {DEFAULT_MODEL_DIR}; pass --checkpoint/--diffusers, or train and install one "
            "with `cogvideox-jax train-shapes --workdir DIR --install`")
    return DEFAULT_MODEL_DIR


def install_default_model(checkpoint: str, target: str = DEFAULT_MODEL_DIR) -> str:
    """Copy ``checkpoint`` (a pipeline checkpoint folder) to ``target``, replacing what is there."""
    from cogvideox_jax.convert.pipeline_checkpoint import read_marker

    read_marker(checkpoint)
    if os.path.exists(target):
        shutil.rmtree(target)
    shutil.copytree(checkpoint, target, ignore=shutil.ignore_patterns(*SKIP))
    return target
