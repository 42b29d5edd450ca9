"""Classical optical flow (OpenCV DIS) for dynamic degree: NOT comparable to VBench.

VBench uses RAFT-things. DIS reads the top-5% flow statistic closely on textured global motion but
under-reads flat-coloured moving objects (aperture problem), so results from this backend are
labelled ``comparable_to_vbench: false``. Frames are padded like RAFT's ``InputPadder`` so the
statistic is taken over the same number of pixels.
"""
from __future__ import annotations

import numpy as np

from cogvideox_jax.eval.vbench.backends.interfaces import BackendInfo
from cogvideox_jax.eval.vbench.dynamic_degree import pad_to_multiple_of_8

PRESETS = ("ultrafast", "fast", "medium")


class DISOpticalFlow:
    def __init__(self, preset: str = "medium"):
        try:
            import cv2
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                "the DIS optical-flow backend needs OpenCV: pip install opencv-python-headless"
            ) from e
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}")
        self._cv2 = cv2
        self._dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{preset.upper()}"))
        self.info = BackendInfo(
            name=f"opencv-dis-{preset}",
            comparable_to_vbench=False,
            note="classical DIS flow in place of RAFT-things; under-reads flat moving objects",
        )

    def _gray(self, frame: np.ndarray) -> np.ndarray:
        frame = pad_to_multiple_of_8(np.ascontiguousarray(frame, dtype=np.uint8))
        return self._cv2.cvtColor(frame, self._cv2.COLOR_RGB2GRAY)

    def flow(self, frame1: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        return self._dis.calc(self._gray(frame1), self._gray(frame2), None)
