"""Dynamic-degree optical flow with the JAX RAFT port (``OpticalFlow``).

Frames are replicate-padded to a multiple of 8 exactly like VBench's ``InputPadder`` and the flow is
returned at the padded size, which is what VBench scores. RAFT needs frames of at least 128 px on
each side (its coarsest correlation level must be >= 2 px), as in VBench.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from cogvideox_jax.eval.vbench.backends.interfaces import BackendInfo
from cogvideox_jax.eval.vbench.dynamic_degree import pad_to_multiple_of_8

MIN_SIDE = 128


class RaftJaxFlow:
    def __init__(self, weights: str, iters: int = 20):
        from cogvideox_jax.eval.vbench.backends.raft_weights import load_raft

        try:
            self.module, self.params = load_raft(weights, iters=iters)
        except RuntimeError as e:  # e.g. a legacy (non-zip) torch file that cannot be memory-mapped
            raise RuntimeError(
                f"could not read {weights}: {e}. Convert it once to safetensors: python -c \"import torch; "
                "from safetensors.torch import save_file; "
                f"save_file(torch.load('{weights}', map_location='cpu'), '{weights}.safetensors')\""
            ) from e
        self._fn = jax.jit(lambda p, a, b: self.module.apply({"params": p}, a, b))
        self.info = BackendInfo(
            name=f"raft-things (jax port, {iters} iters)",
            comparable_to_vbench=True,
            weights=os.path.abspath(weights),
            note="parity with VBench's PyTorch RAFT checked at random init; fp32",
        )

    def flow(self, frame1: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        if min(frame1.shape[:2]) < MIN_SIDE:
            raise ValueError(f"RAFT needs frames of at least {MIN_SIDE} px per side, got {frame1.shape[:2]}")
        a = jnp.asarray(pad_to_multiple_of_8(np.asarray(frame1)), jnp.float32)[None]
        b = jnp.asarray(pad_to_multiple_of_8(np.asarray(frame2)), jnp.float32)[None]
        return np.asarray(self._fn(self.params, a, b))[0]
