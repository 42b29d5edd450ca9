"""The documented lean VAE decode (``cogvideox_jax.pipeline.VAEDecoder`` / ``decode_video``): decoder-only
weights, the memory-optimized compile, the pipeline's scaling and output; from a VAE folder, a pipeline
root or through the pipeline's own decode."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cogvideox_jax.models.vae import TilingConfig
from cogvideox_jax.pipeline import VAEDecoder, decode_video

pytest.importorskip("torch")
pytest.importorskip("diffusers")
from cogvideox_jax_oracles.pipeline_oracle import make_pipeline_folder  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_pipeline_folder(tmp_path_factory.mktemp("pipe"), "5b")[0]


def test_lean_decode_equals_the_pipelines(folder):
    from cogvideox_jax.pipeline import CogVideoXPipeline

    decoder = VAEDecoder.from_pretrained(folder)                  # the pipeline root: its vae/
    assert set(decoder.params) == {"decoder"}                     # the encoder's weights were never read
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (1, 3, 4, 6, 4)))
    pipe = CogVideoXPipeline.from_pretrained(folder)
    video = decoder(z)
    assert video.shape == (1, 9, 32, 48, 3) and video.dtype == np.float32
    np.testing.assert_allclose(video, pipe.latents_to_video(z), atol=1e-5, rtol=0)   # (another XLA program)
    np.testing.assert_array_equal(decode_video(folder + "/vae", z), video)   # the VAE folder, one call
    raw = decoder.decode(z / decoder.config.scaling_factor, scaled=False)
    np.testing.assert_allclose(np.asarray(raw), np.asarray(decoder.decode(z)), atol=1e-5)
    bf16 = VAEDecoder.from_pretrained(folder, param_dtype=jnp.bfloat16)
    assert {x.dtype for x in jax.tree_util.tree_leaves(bf16.params)} == {jnp.dtype(jnp.bfloat16)}


def test_tiled_lean_decode_equals_the_module_tiled_decode(folder):
    tile = TilingConfig(tile_sample_min_height=48, tile_sample_min_width=40)
    decoder = VAEDecoder.from_pretrained(folder, tiling=tile)
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (1, 1, 6, 6, 4)))   # 2 tiles across
    vae, params = decoder.vae, decoder.params
    from cogvideox_jax.models.vae.latent_scaling import unscale_latents

    want = jax.jit(lambda p, v: vae.apply({"params": p}, unscale_latents(v, vae.config), tiling=tile,
                                          method="decode"))(params, z)
    np.testing.assert_allclose(np.asarray(decoder.decode(z)), np.asarray(want), atol=1e-5, rtol=0)
