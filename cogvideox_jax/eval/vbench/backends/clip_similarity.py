"""Appearance-style similarity with the JAX CLIP port (``ImageTextSimilarity``).

Preprocessing follows VBench's ``clip_transform_Image(224)`` on PIL images: torchvision ``Resize(224)``
(short side to 224, long side ``int(224 * long / short)``, PIL bicubic), ``CenterCrop(224)``
(offsets ``int(round((size - 224) / 2))``), ``ToTensor`` (/255) and CLIP's mean/std. Text goes through
the CLIP BPE tokenizer saved in the same folder (transformers ``CLIPTokenizer``; same BPE, lower-
casing and start/end tokens as OpenAI's ``clip.tokenize``; with a causal text tower the padding
``clip.tokenize`` adds does not change the EOS feature).
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from cogvideox_jax.eval.vbench.appearance_style import clip_frame_similarities
from cogvideox_jax.eval.vbench.backends.interfaces import BackendInfo, check_frames

CLIP_MEAN = np.array((0.48145466, 0.4578275, 0.40821073), np.float32)
CLIP_STD = np.array((0.26862954, 0.26130258, 0.27577711), np.float32)


def resized_size(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision ``Resize(size)`` output ``(h, w)`` for an int size (short side -> size)."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def clip_preprocess(frame: np.ndarray, size: int = 224) -> np.ndarray:
    """One uint8 (H, W, 3) frame -> normalised float32 (size, size, 3)."""
    from PIL import Image

    img = Image.fromarray(np.asarray(frame, np.uint8))
    h, w = resized_size(img.height, img.width, size)
    if (h, w) != (img.height, img.width):
        img = img.resize((w, h), Image.BICUBIC)
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    img = img.crop((left, top, left + size, top + size))
    x = np.asarray(img, np.float32) / 255.0
    return (x - CLIP_MEAN) / CLIP_STD


class ClipJaxSimilarity:
    """``logits_per_text / 100`` per frame from a transformers CLIP folder, computed in JAX."""

    def __init__(self, folder: str, batch_size: int = 16, dtype=jnp.float32):
        from cogvideox_jax.eval.vbench.backends.clip_weights import load_clip

        self.module, self.params, self.cfg = load_clip(folder, dtype=dtype)
        self.batch_size = batch_size
        self._tokenizer_folder = folder
        self._text_cache: dict[str, np.ndarray] = {}
        self.info = BackendInfo(
            name="clip (jax port)",
            comparable_to_vbench=True,
            weights=os.path.abspath(folder),
            note="fp32; VBench runs OpenAI CLIP in fp16 on GPU (differences ~1e-3 per frame)",
        )
        self._image_fn = jax.jit(lambda p, x: self.module.apply({"params": p}, x, method="get_image_features"))
        self._text_fn = jax.jit(lambda p, t: self.module.apply({"params": p}, t, method="get_text_features"))

    @functools.cached_property
    def tokenizer(self):
        from transformers import CLIPTokenizer

        return CLIPTokenizer.from_pretrained(self._tokenizer_folder)

    def text_embedding(self, text: str) -> np.ndarray:
        if text not in self._text_cache:
            ids = self.tokenizer(text, truncation=True, max_length=self.cfg.max_position_embeddings)["input_ids"]
            self._text_cache[text] = np.asarray(self._text_fn(self.params, jnp.asarray([ids], jnp.int32)))[0]
        return self._text_cache[text]

    def image_embeddings(self, frames: np.ndarray) -> np.ndarray:
        frames = check_frames(frames)
        out = []
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start : start + self.batch_size]
            pix = np.stack([clip_preprocess(f, self.cfg.image_size) for f in chunk])
            n = len(pix)
            if n < self.batch_size:  # one compiled shape
                pix = np.concatenate([pix, np.zeros((self.batch_size - n,) + pix.shape[1:], pix.dtype)])
            out.append(np.asarray(self._image_fn(self.params, jnp.asarray(pix)))[:n])
        return np.concatenate(out)

    def similarities(self, frames: np.ndarray, text: str) -> np.ndarray:
        scale = float(np.exp(np.asarray(self.params["logit_scale"], np.float64)))
        return clip_frame_similarities(self.image_embeddings(frames), self.text_embedding(text), scale)
