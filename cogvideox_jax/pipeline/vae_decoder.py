"""The one documented way to decode CogVideoX latents to a video: the lean path.

    from cogvideox_jax.pipeline import VAEDecoder, decode_video
    decoder = VAEDecoder.from_pretrained("path/to/CogVideoX-5b")      # pipeline root, its vae/, or a Hub id
    video = decoder(latents)             # (B, t, h, w, 16) scaled latents -> float32 (B, T, H, W, 3) in [0, 1]
    video = decode_video("path/to/CogVideoX-5b", latents, tiling=True)   # the same, one call

Lean means: only the decoder's weights are read (``load_diffusers(folder, parts=("decoder",))``: the
encoder's never touch memory), held as 64-byte-aligned host arrays that XLA:CPU uses in place, and the
decode is compiled once per shape with the memory-optimized XLA:CPU scheduler
(``cogvideox_jax/compiler_options.py``: 2.6 -> 1.0 GiB of temporaries on the 2b VAE's 9x128x128 decode).
``tiling=True`` (diffusers' ``enable_tiling()`` defaults) bounds the activations by a tile's for large
frames; ``frame_batching`` as ``AutoencoderKLCogVideoX.decode`` (the reference's 2-latent-frame chunks
by default). Latents are the transformer's (scaled: ``scaled=True`` divides by the scaling factor, as
the pipelines do); ``scaled=False`` takes raw VAE latents.
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from cogvideox_jax.compiler_options import memory_optimized
from cogvideox_jax.models.vae.latent_scaling import unscale_latents
from cogvideox_jax.models.vae.tiling import TilingConfig, tiled_decode


def vae_folder(path: str, *, revision: str | None = None) -> str:
    """The ``vae/`` folder of ``path``: a VAE folder itself, a pipeline root holding ``vae/``, or a Hub id."""
    from cogvideox_jax.pipeline import hub

    if hub.is_hub_id(path):
        path = hub.snapshot(path, ("vae",), revision=revision)
    if not os.path.exists(os.path.join(path, "config.json")) and os.path.isdir(os.path.join(path, "vae")):
        return os.path.join(path, "vae")
    return path


class VAEDecoder:
    """A CogVideoX VAE decoder with its weights: ``decoder(latents) -> video`` (see the module doc)."""

    def __init__(self, vae, params, *, frame_batching: str = "diffusers", tiling: bool | TilingConfig = False):
        self.vae = vae
        self.params = params
        self.frame_batching = frame_batching
        self.tiling = tiling
        self._jit = {}

    @classmethod
    def from_pretrained(cls, path: str, *, dtype=jnp.float32, param_dtype=jnp.float32,
                        frame_batching: str = "diffusers", tiling: bool | TilingConfig = False,
                        revision: str | None = None) -> "VAEDecoder":
        from cogvideox_jax.convert import load_diffusers

        vae, params = load_diffusers(vae_folder(path, revision=revision), dtype=dtype, param_dtype=param_dtype,
                                     parts=("decoder",))
        return cls(vae, params, frame_batching=frame_batching, tiling=tiling)

    @property
    def config(self):
        return self.vae.config

    def decode(self, latents, *, scaled: bool = True):
        """Latents ``(B, t, h, w, C)`` -> float32 video ``(B, T, H, W, 3)`` in [-1, 1] (a device array)."""
        key = (scaled, self.frame_batching, self.tiling)
        if key not in self._jit:
            vae = self.vae

            def fn(params, z):
                z = unscale_latents(z, vae.config) if scaled else z
                decode = lambda t: vae.apply({"params": params}, t, frame_batching=self.frame_batching,  # noqa: E731
                                             method="decode")
                return tiled_decode(decode, z, self.tiling, vae.config)

            self._jit[key] = jax.jit(fn, compiler_options=memory_optimized())
        return self._jit[key](self.params, jnp.asarray(latents, jnp.float32))

    def __call__(self, latents, *, scaled: bool = True) -> np.ndarray:
        """Latents -> float32 host video ``(B, T, H, W, 3)`` in [0, 1] (the pipelines' output)."""
        video = self.decode(latents, scaled=scaled)
        return np.asarray(jnp.clip(video / 2 + 0.5, 0.0, 1.0), np.float32)


@functools.lru_cache(maxsize=2)
def _cached_decoder(path: str, param_dtype_name: str, frame_batching: str, tiling, revision) -> VAEDecoder:
    return VAEDecoder.from_pretrained(path, param_dtype=jnp.dtype(param_dtype_name), frame_batching=frame_batching,
                                      tiling=tiling, revision=revision)


def decode_video(model, latents, *, scaled: bool = True, tiling: bool | TilingConfig = False,
                 frame_batching: str = "diffusers", param_dtype=jnp.float32, revision: str | None = None) -> np.ndarray:
    """Decode ``latents`` with ``model`` (a ``VAEDecoder``, or a path / Hub id loaded once and kept) ->
    float32 ``(B, T, H, W, 3)`` in [0, 1]."""
    if not isinstance(model, VAEDecoder):
        model = _cached_decoder(os.fspath(model), jnp.dtype(param_dtype).name, frame_batching, tiling, revision)
    return model(latents, scaled=scaled)
