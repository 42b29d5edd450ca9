"""Run a dimension through the ``vbench`` package itself (Vchitect/VBench), when it is installed.

This is the reference path for the four models with no JAX port (UMT, Tag2Text, RAFT, GRiT) and an
alternative for CLIP: we write VBench's full-info JSON for the videos we discovered and call
``vbench.<dimension>.compute_<dimension>(json_path, device, submodules)`` with the user's weight
files, so decoding, preprocessing, models and scoring are VBench's own. ``vbench`` and its
dependencies (torch, decord, detectron2 for GRiT, ...) are the user's to install; this module only
imports it lazily and never from the rest of the package.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import tempfile
from typing import Sequence

from cogvideox_jax.eval.vbench.backends.interfaces import BackendInfo
from cogvideox_jax.eval.vbench.discovery import PromptVideos


def vbench_available() -> bool:
    return importlib.util.find_spec("vbench") is not None


def vbench_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("vbench")
    except Exception:  # noqa: BLE001 - not installed or no metadata
        return None


def auxiliary_info(dimension: str, aux: str | None) -> dict | None:
    """The ``auxiliary_info`` block of VBench_full_info.json for one entry (VBench's nesting)."""
    if dimension == "scene":
        return {"scene": {"scene": {"scene": aux}}}
    if dimension == "multiple_objects":
        return {"multiple_objects": {"object": aux}}
    if dimension == "appearance_style":
        return {"appearance_style": {"appearance_style": aux}}
    return None


def full_info_entries(dimension: str, prompt_videos: Sequence[PromptVideos]) -> list[dict]:
    """What ``VBench.build_full_info_json`` writes, for the prompts of one dimension."""
    out = []
    for pv in prompt_videos:
        entry = {"prompt_en": pv.entry.prompt, "dimension": [dimension], "video_list": list(pv.video_paths)}
        aux = auxiliary_info(dimension, pv.entry.aux)
        if aux is not None:
            entry["auxiliary_info"] = aux
        out.append(entry)
    return out


def submodules(dimension: str, weights: str):
    """The ``submodules`` argument VBench's ``init_submodules`` would build for this weight file."""
    if dimension == "human_action":
        return [weights]
    if dimension == "scene":
        return {"pretrained": weights, "image_size": 384, "vit": "swin_b"}
    if dimension == "dynamic_degree":
        return {"model": weights}
    if dimension == "multiple_objects":
        return {"model_weight": weights}
    if dimension == "appearance_style":
        return {"name": weights}
    raise ValueError(f"unsupported dimension {dimension!r}")


MODEL_NAMES = {
    "human_action": "umt-l16-k400",
    "scene": "tag2text-swin-b",
    "dynamic_degree": "raft-things",
    "multiple_objects": "grit-b-objectdet",
    "appearance_style": "clip-vit-b/32",
}


class VBenchDimension:
    """Evaluates a whole dimension with VBench's code; ``evaluate`` returns ``(score, video_results)``."""

    def __init__(self, dimension: str, weights: str, device: str = "cuda"):
        self.dimension = dimension
        self.weights = weights
        self.device = device
        self.info = BackendInfo(
            name=f"{MODEL_NAMES[dimension]} (vbench {vbench_version() or '?'})",
            comparable_to_vbench=True,
            weights=os.path.abspath(weights),
        )

    def evaluate(self, prompt_videos: Sequence[PromptVideos]) -> tuple[float, list]:
        module = importlib.import_module(f"vbench.{self.dimension}")
        # VBench's API takes a torch.device (GRiT reads ``device.type``); it is built with the torch
        # the VBench module imported itself, so this package never imports torch.
        device = module.torch.device(self.device)
        compute = getattr(module, f"compute_{self.dimension}")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"{self.dimension}_full_info.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(full_info_entries(self.dimension, prompt_videos), f)
            score, video_results = compute(path, device, submodules(self.dimension, self.weights))
        return float(score), video_results
