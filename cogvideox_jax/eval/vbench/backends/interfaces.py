"""Small interfaces between VBench's scoring rules and the models they need.

Every backend receives decoded uint8 RGB frames ``(T, H, W, 3)`` at the video's own resolution and
does its model's own preprocessing (documented per method as VBench does it). Each carries a
``BackendInfo`` that ends up in the results JSON, so a non-standard backend (e.g. OpenCV DIS in place
of RAFT) can never pass for a VBench number.
"""
from __future__ import annotations

import dataclasses
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@dataclasses.dataclass(frozen=True)
class BackendInfo:
    name: str  # e.g. "raft-things (vbench)", "opencv-dis", "clip-vit-b/32 (jax)"
    comparable_to_vbench: bool  # False: the number is not a VBench number
    weights: str | None = None  # file or folder the weights came from
    note: str = ""

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RequiresWeights:
    """Stands in for a backend that cannot be built; the dimension is reported, not scored."""

    needs: tuple[str, ...]
    status: str = "requires weights"
    note: str = ""

    def to_json(self) -> dict:
        out = {"status": self.status, "needs": list(self.needs)}
        if self.note:
            out["note"] = self.note
        return out


@runtime_checkable
class OpticalFlow(Protocol):
    """Dense flow for dynamic degree. VBench: RAFT-things, 20 iterations, ``test_mode``; both frames
    replicate-padded to a multiple of 8 (``InputPadder``, sintel mode) and the flow is returned at
    the padded size (VBench scores the padded flow)."""

    info: BackendInfo

    def flow(self, frame1: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 x2 -> (H', W', 2) float flow (u, v) in pixels."""
        ...


@runtime_checkable
class ActionClassifier(Protocol):
    """Human action. VBench: UMT ViT-L/16 fine-tuned on K400, 16 middle frames, bilinear short side
    256, centre crop 224, /255, ImageNet mean/std."""

    info: BackendInfo

    def probabilities(self, frames: np.ndarray) -> np.ndarray:
        """16 frames (16, H, W, 3) uint8 -> (400,) sigmoid probabilities in Kinetics-400 order."""
        ...


@runtime_checkable
class Captioner(Protocol):
    """Scene. VBench: Tag2Text Swin-B (384), frames decoded at 384x384, ImageNet mean/std, beam 3,
    max length 30, min length 10."""

    info: BackendInfo

    def captions(self, frames: np.ndarray) -> list[str]:
        """(T, H, W, 3) uint8 -> one caption per frame."""
        ...


@runtime_checkable
class ObjectDetector(Protocol):
    """Multiple objects. VBench: GRiT-B ObjectDet, score threshold 0.5; frames whose short side
    exceeds 768 resized by 720/min(H, W) first (``multiple_objects.grit_resize_shape``)."""

    info: BackendInfo

    def detect(self, frames: np.ndarray) -> list[set[str]]:
        """(T, H, W, 3) uint8 -> the set of detected class names per frame."""
        ...


@runtime_checkable
class ImageTextSimilarity(Protocol):
    """Appearance style. VBench: CLIP ViT-B/32, each frame bicubic-resized (short side 224), centre
    crop 224, CLIP mean/std; text = the style phrase; similarity = ``logits_per_text / 100``."""

    info: BackendInfo

    def similarities(self, frames: np.ndarray, text: str) -> np.ndarray:
        """(T, H, W, 3) uint8, text -> (T,) float similarities."""
        ...


def check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
    return frames


Backend = OpticalFlow | ActionClassifier | Captioner | ObjectDetector | ImageTextSimilarity
BackendOrMissing = Backend | RequiresWeights
BackendsByDimension = dict[str, BackendOrMissing]
FrameSequence = Sequence[np.ndarray]
