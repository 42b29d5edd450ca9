"""Pick each dimension's backend from a weights folder, or say exactly what is missing.

``--weights-dir`` follows VBench's cache layout (``~/.cache/vbench``), so an existing VBench cache
works as is:

- human_action:     umt_model/l16_ptk710_ftk710_ftk400_f16_res224.pth       (vbench package)
- scene:            caption_model/tag2text_swin_14m.pth                     (vbench package)
- dynamic_degree:   raft_model/models/raft-things.pth (or a .safetensors copy next to it)
                    -> JAX RAFT port (``flow="auto"``/``"raft"``) or the vbench package
                    (``flow="vbench"``); ``flow="dis"``: OpenCV DIS, labelled not comparable
- multiple_objects: grit_model/grit_b_densecap_objectdet.pth                (vbench package)
- appearance_style: clip-vit-base-patch32/ (transformers CLIPModel folder: config.json,
                    model.safetensors, tokenizer files) -> JAX port; or clip_model/ViT-B-32.pt
                    (vbench package)

Nothing is ever downloaded and there is no silent fallback: a dimension whose backend cannot be
built resolves to ``RequiresWeights`` (status "requires weights", or "requires backend" when the
weights are there but the ``vbench`` package that runs them is not).
"""
from __future__ import annotations

import os

from cogvideox_jax.eval.vbench.backends.interfaces import RequiresWeights
from cogvideox_jax.eval.vbench.backends.vbench_adapter import VBenchDimension, vbench_available

VBENCH_WEIGHTS = {
    "human_action": "umt_model/l16_ptk710_ftk710_ftk400_f16_res224.pth",
    "scene": "caption_model/tag2text_swin_14m.pth",
    "dynamic_degree": "raft_model/models/raft-things.pth",
    "multiple_objects": "grit_model/grit_b_densecap_objectdet.pth",
    "appearance_style": "clip_model/ViT-B-32.pt",
}
CLIP_FOLDERS = ("clip-vit-base-patch32", "clip_model/clip-vit-base-patch32")
FLOW_CHOICES = ("auto", "raft", "vbench", "dis")


def _vbench_or_missing(dimension: str, weights_dir: str | None, device: str):
    rel = VBENCH_WEIGHTS[dimension]
    path = os.path.join(weights_dir, rel) if weights_dir else None
    if path is None or not os.path.isfile(path):
        return None, f"<weights-dir>/{rel}"
    if not vbench_available():
        return RequiresWeights(
            needs=("the vbench package (pip install vbench, with its PyTorch dependencies)",),
            status="requires backend",
            note=f"found {path}, but it runs through VBench's PyTorch code, which is not installed",
        ), None
    return VBenchDimension(dimension, path, device), None


def find_clip_folder(weights_dir: str | None) -> str | None:
    for rel in CLIP_FOLDERS:
        folder = os.path.join(weights_dir, rel) if weights_dir else None
        if folder and os.path.isfile(os.path.join(folder, "config.json")):
            return folder
    return None


def find_raft_weights(weights_dir: str | None) -> str | None:
    if not weights_dir:
        return None
    path = os.path.join(weights_dir, VBENCH_WEIGHTS["dynamic_degree"])
    for candidate in (os.path.splitext(path)[0] + ".safetensors", path + ".safetensors", path):
        if os.path.isfile(candidate):
            return candidate
    return None


def resolve_backend(dimension: str, weights_dir: str | None, flow: str = "auto", device: str = "cuda"):
    """A backend (interfaces.py), a ``VBenchDimension``, or ``RequiresWeights``."""
    if flow not in FLOW_CHOICES:
        raise ValueError(f"flow must be one of {FLOW_CHOICES}")
    if dimension == "dynamic_degree" and flow == "dis":
        from cogvideox_jax.eval.vbench.backends.dis_flow import DISOpticalFlow

        return DISOpticalFlow()
    if dimension == "dynamic_degree" and flow in ("auto", "raft"):
        raft = find_raft_weights(weights_dir)
        if raft is not None:
            from cogvideox_jax.eval.vbench.backends.raft_flow import RaftJaxFlow

            return RaftJaxFlow(raft)
    if dimension == "appearance_style":
        folder = find_clip_folder(weights_dir)
        if folder is not None:
            from cogvideox_jax.eval.vbench.backends.clip_similarity import ClipJaxSimilarity

            return ClipJaxSimilarity(folder)
    backend, need = _vbench_or_missing(dimension, weights_dir, device)
    if backend is not None:
        return backend
    needs = [need]
    note = ""
    if dimension == "appearance_style":
        needs = [f"<weights-dir>/{CLIP_FOLDERS[0]}/ (transformers openai/clip-vit-base-patch32 folder)", need + " (with vbench)"]
    elif dimension == "dynamic_degree":
        note = "or --flow-backend dis (OpenCV DIS; not comparable to VBench)"
    return RequiresWeights(needs=tuple(needs), note=note)
