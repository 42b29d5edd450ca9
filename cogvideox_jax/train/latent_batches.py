"""Batch sources for the trainer. Every source is an iterator of global-batch dicts
``{"latents": (B,t,h,w,C), "text_emb": (B,L,D)}`` (numpy) with ``get_state()`` / ``set_state()``.

- ``SyntheticLatentBatches``: a fixed set of random examples, reshuffled every epoch from a seed;
  deterministic, so a resumed run sees exactly the batches an uninterrupted run sees.
- ``ArrayLatentBatches``: precomputed latents + T5 embeddings (e.g. ``np.load`` of cached arrays).
- ``EncodedVideoBatches``: wraps a pixel pipeline yielding ``{"video": (B,T,H,W,3), "prompt": …}``
  (``cogvideox_jax/data``) and encodes with the frozen VAE / T5 callables given to it.
"""
from __future__ import annotations

from typing import Callable, Iterator

import zlib

import numpy as np


class ArrayLatentBatches:
    """Epoch-shuffled batches over in-memory arrays; state = number of batches consumed."""

    def __init__(self, latents: np.ndarray, text_emb: np.ndarray, batch_size: int, seed: int = 0):
        if len(latents) != len(text_emb):
            raise ValueError("latents and text_emb have different lengths")
        if len(latents) < batch_size:
            raise ValueError(f"{len(latents)} examples < batch size {batch_size}")
        self.latents, self.text_emb = latents, text_emb
        self.batch_size, self.seed = batch_size, seed
        self.position = 0

    @property
    def batches_per_epoch(self) -> int:
        return len(self.latents) // self.batch_size

    def _indices(self, position: int) -> np.ndarray:
        epoch, i = divmod(position, self.batches_per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.latents))
        return np.sort(perm[i * self.batch_size:(i + 1) * self.batch_size])

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        idx = self._indices(self.position)
        self.position += 1
        return {"latents": self.latents[idx], "text_emb": self.text_emb[idx]}

    def get_state(self) -> dict:
        return {"position": int(self.position), "seed": int(self.seed)}

    def set_state(self, state: dict) -> None:
        self.position = int(state["position"])
        if "seed" in state and int(state["seed"]) != self.seed:
            raise ValueError(f"data state was written with seed {state['seed']}, this iterator uses {self.seed}")


class SyntheticLatentBatches(ArrayLatentBatches):
    """``num_examples`` fixed random (latent, text) pairs; latents have a per-example structure
    (smooth in space and time) so a model can actually fit them."""

    def __init__(self, num_examples: int, latent_shape: tuple, text_shape: tuple, batch_size: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        t, h, w, c = latent_shape
        base = rng.standard_normal((num_examples, 1, 1, 1, c)).astype(np.float32)
        tt = np.linspace(0, 1, t, dtype=np.float32)[None, :, None, None, None]
        yy = np.linspace(-1, 1, h, dtype=np.float32)[None, None, :, None, None]
        xx = np.linspace(-1, 1, w, dtype=np.float32)[None, None, None, :, None]
        freq = rng.uniform(0.5, 2.0, (num_examples, 1, 1, 1, c)).astype(np.float32)
        latents = base * np.cos(np.pi * freq * (xx + yy + 0.5 * tt)).astype(np.float32)
        text = rng.standard_normal((num_examples, *text_shape)).astype(np.float32)
        super().__init__(latents, text, batch_size, seed)


class FirstLatentFrameImages:
    """I2V batches from a latent-only source: ``image_latents`` = each clip's first latent frame.

    The CogVideoX VAE is causal (the first latent frame sees only the first pixel frame), so this is
    the conditioning image's latent up to GroupNorm statistics and without the reference's pixel-noise
    augmentation (which needs pixels: the ``videos`` data path applies it). State passes through.
    """

    def __init__(self, source):
        self.source = source
        self.process_local = getattr(source, "process_local", False)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        b = dict(next(self.source))
        b["image_latents"] = np.asarray(b["latents"])[:, :1]
        return b

    def get_state(self):
        return self.source.get_state()

    def set_state(self, state) -> None:
        self.source.set_state(state)


class EncodedVideoBatches:
    """Adapter: pixel batches → latent batches through frozen encoders (state passes through).

    ``encode_video(video (B,T,H,W,3) in [-1,1]) -> latents (B,t,h,w,C)`` already scaled by the VAE
    scaling factor; ``encode_text(prompts) -> (B, L, D)``.
    """

    process_local = True  # batches are this process's slice of the global batch

    provides_image_latents = False

    def __init__(self, source, encode_video: Callable, encode_text: Callable, image_conditioned: bool = False,
                 seed: int = 0):
        self.source, self.encode_video, self.encode_text = source, encode_video, encode_text
        self.provides_image_latents = image_conditioned
        self.seed = seed

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        state = self.source.get_state() if self.provides_image_latents else None
        b = next(self.source)
        out = {"latents": np.asarray(self.encode_video(b["video"])), "text_emb": np.asarray(self.encode_text(b["prompt"]))}
        if self.provides_image_latents:  # the reference's noised-image conditioning (pixel-space noise)
            from cogvideox_jax.train.i2v_conditioning import first_frame_images, noise_images

            images = np.asarray(b["image"])[:, None] if "image" in b else first_frame_images(b["video"])
            # seeded by the source position: a resumed run draws the same image noise
            rng = np.random.default_rng([self.seed, zlib.crc32(repr(state).encode())])
            out["image_latents"] = np.asarray(self.encode_video(noise_images(rng, images)))
        return out

    def get_state(self):
        return self.source.get_state()

    def set_state(self, state) -> None:
        self.source.set_state(state)
