"""VAE latents <-> the transformer's space (``models/vae/latent_scaling.py``)."""
from __future__ import annotations

import chex
import jax
import numpy as np
import pytest

from configs.vae import COGVIDEOX_2B, VAEConfig
from cogvideox_jax.models.vae.latent_scaling import has_offsets, scale_latents, unscale_latents


def _latents(seed=0, channels=4):
    rng = np.random.default_rng(seed)
    offsets, spreads = rng.normal(0, 2, channels), rng.uniform(0.2, 0.8, channels)
    return (offsets + spreads * rng.normal(size=(3, 2, 4, 4, channels))).astype(np.float32)


def test_scaling_factor_only_is_the_references_arithmetic():
    z = _latents(channels=16)
    s = COGVIDEOX_2B.scaling_factor
    np.testing.assert_array_equal(np.asarray(scale_latents(z, COGVIDEOX_2B)), z * np.float32(s))
    np.testing.assert_array_equal(np.asarray(unscale_latents(z, COGVIDEOX_2B)), z / np.float32(s))
    # under jit too, the same program as the reference's expression (XLA may turn / s into * (1/s))
    jitted = jax.jit(lambda x: unscale_latents(x, COGVIDEOX_2B))(z)
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(jax.jit(lambda x: x / s)(z)))


def test_per_channel_stats_follow_the_diffusers_convention_and_invert():
    z = _latents()
    mean, std = z.reshape(-1, 4).mean(0), z.reshape(-1, 4).std(0)
    cfg = VAEConfig(latent_channels=4, scaling_factor=0.5, latents_mean=tuple(mean), latents_std=tuple(std))
    scaled = np.asarray(scale_latents(z, cfg))
    # diffusers (SDXL pipelines): decode input = latents * latents_std / scaling_factor + latents_mean
    np.testing.assert_allclose(scaled * std / 0.5 + mean, z, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scaled.reshape(-1, 4).mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(scaled.reshape(-1, 4).std(0), 0.5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(unscale_latents(scaled, cfg)), z, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(jax.jit(lambda x: unscale_latents(x, cfg))(scaled)), z, rtol=1e-5, atol=1e-5)


def test_shift_factor():
    z = _latents()
    cfg = VAEConfig(scaling_factor=1.5, shift_factor=0.25)
    np.testing.assert_allclose(np.asarray(scale_latents(z, cfg)), (z - 0.25) * 1.5, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(unscale_latents(scale_latents(z, cfg), cfg)), z, rtol=1e-5, atol=1e-6)


def test_inconsistent_stats_are_rejected():
    z = _latents()
    # precompute / export ask this before using scaling_factor alone: any extra field counts
    assert not has_offsets(COGVIDEOX_2B)
    assert has_offsets(VAEConfig(latents_std=(1.0,) * 4)) and has_offsets(VAEConfig(shift_factor=0.1))
    with pytest.raises(ValueError, match="only one of"):
        scale_latents(z, VAEConfig(latents_mean=(0.0,) * 4))
    with pytest.raises(ValueError, match="channels"):
        unscale_latents(z, VAEConfig(latents_mean=(0.0,) * 3, latents_std=(1.0,) * 3))


def test_pipeline_decodes_through_the_vae_configs_scaling():
    """``CogVideoXPipeline.decode_latents`` un-scales by the VAE config (here the packaged default
    model's VAE given per-channel stats): decode(z · σ + μ), not decode(z / s)."""
    import dataclasses

    import jax.numpy as jnp

    from cogvideox_jax.models.vae.autoencoder import AutoencoderKLCogVideoX
    from cogvideox_jax.pipeline import CogVideoXPipeline
    from cogvideox_jax.shapes.default_model import default_checkpoint

    pipe = CogVideoXPipeline.from_pretrained(default_checkpoint())
    vae_params = pipe.components.vae_params
    c = pipe.components.vae.config.latent_channels
    rng = np.random.default_rng(2)
    mean, std = rng.normal(0, 1, c), rng.uniform(0.3, 0.6, c)
    cfg = dataclasses.replace(pipe.components.vae.config, scaling_factor=1.0, latents_mean=tuple(mean),
                              latents_std=tuple(std))
    pipe.components.vae = AutoencoderKLCogVideoX(cfg)
    z = jnp.asarray(rng.normal(size=(1, 1, 8, 8, c)), jnp.float32)
    got = np.asarray(pipe.decode_latents(z))
    raw = z * jnp.asarray(std, jnp.float32) + jnp.asarray(mean, jnp.float32)
    want = np.asarray(pipe.components.vae.apply({"params": vae_params}, raw, frame_batching=pipe.vae_decode,
                                                method="decode"))
    chex.assert_shape(got, (1, 1, 64, 64, 3))
    np.testing.assert_allclose(got, want, atol=1e-5)
    plain = np.asarray(pipe.components.vae.apply({"params": vae_params}, z, frame_batching=pipe.vae_decode,
                                                 method="decode"))
    assert np.abs(got - plain).max() > 1e-2   # the stats did change what is decoded
