"""Tiled VAE decode inside the pipeline (``vae_tiling``) equals diffusers' tiled decode
(``vae.enable_tiling()``), end to end and on sharded params; tile settings that do not line up are an
error (diffusers would return a video of the wrong size)."""
import numpy as np
import pytest

from cogvideox_jax.models.vae import TilingConfig
from cogvideox_jax.pipeline import CogVideoXPipeline

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
from cogvideox_jax_oracles.pipeline_oracle import make_pipeline_folder, to_torch_latents  # noqa: E402
from tests.test_pipeline_parity import _same_scheduler_noise  # noqa: E402
from cogvideox_jax_oracles.vae_oracle import rel_err  # noqa: E402

# the tiny VAE's own defaults (16 x 24 px tiles) do not line up (see tiling.py): tiles of 48 x 40 px
# (latent 6 x 5, every 5 x 4 latents) with diffusers' overlap factors; 64 x 48 px -> 2 x 2 tiles
TILE = dict(tile_sample_min_height=48, tile_sample_min_width=40)
H, W, FRAMES, STEPS, SEED = 64, 48, 9, 2, 3
PROMPT = "A small red circle moves slowly to the left."


@pytest.fixture(scope="module")
def folder_and_ref(tmp_path_factory):
    return make_pipeline_folder(tmp_path_factory.mktemp("pipe"), "5b")


def test_tiled_pipeline_matches_diffusers_tiled(folder_and_ref, monkeypatch):
    folder, ref_pipe = folder_and_ref
    pipe = CogVideoXPipeline.from_pretrained(folder, vae_tiling=TilingConfig(**TILE))
    shape = (1, 3, H // 8, W // 8, 4)
    latents = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    decoded = {}
    original_decode = ref_pipe.decode_latents

    def recording_decode(z):  # diffusers' decode of its final latents, kept for the decode-only comparison
        out = original_decode(z)
        decoded["z"], decoded["frames"] = z.numpy().copy(), out.numpy().copy()
        return out

    ref_pipe.vae.enable_tiling(**TILE)
    monkeypatch.setattr(ref_pipe, "decode_latents", recording_decode)
    try:
        with _same_scheduler_noise(monkeypatch, ref_pipe, SEED, (1, 3, 4, H // 8, W // 8)):
            ref = ref_pipe(prompt=PROMPT, negative_prompt="", num_frames=FRAMES, height=H, width=W,
                           num_inference_steps=STEPS, guidance_scale=6.0, latents=to_torch_latents(latents),
                           output_type="np").frames
    finally:
        ref_pipe.vae.disable_tiling()
    # the decode alone, on diffusers' own latents (frame batching inside the tiles:
    # tests/test_vae_decode_entry.py)
    z = decoded["z"].transpose(0, 1, 3, 4, 2)                       # (B, t, C, h, w) -> ours
    dec = np.asarray(pipe.decode_latents(z))
    ref_dec = decoded["frames"].transpose(0, 2, 3, 4, 1)
    assert dec.shape == ref_dec.shape == (1, FRAMES, H, W, 3)
    assert rel_err(dec, ref_dec) <= 1e-4
    got = pipe(PROMPT, negative_prompt="", num_frames=FRAMES, height=H, width=W, num_inference_steps=STEPS,
               seed=SEED, latents=latents, progress=False)
    ref = np.asarray(ref, np.float32)
    assert got.shape == ref.shape == (1, FRAMES, H, W, 3)
    np.testing.assert_allclose(got, ref, atol=2e-3, rtol=0)
    tiles = TilingConfig.resolve(TilingConfig(**TILE), pipe.vae_config)
    assert tiles.needs_tiling((H // 8, W // 8), latent=True, config=pipe.vae_config)   # 2 x 2 tiles

    # on a mesh (params sharded over fsdp) the tiled decode is the same
    sharded = CogVideoXPipeline.from_pretrained(folder, mesh="data=2,fsdp=4", vae_tiling=TilingConfig(**TILE))
    z1 = z[:, :1, :6]                                        # (one frame, tiles across only: a quick compile)
    np.testing.assert_allclose(np.asarray(sharded.decode_latents(z1)), np.asarray(pipe.decode_latents(z1)),
                               atol=1e-5, rtol=0)


def test_tile_settings_that_do_not_line_up_are_an_error(folder_and_ref):
    pipe = CogVideoXPipeline.from_pretrained(folder_and_ref[0], vae_tiling=True)   # 16 x 24 px on this VAE
    with pytest.raises(ValueError, match="do not line up"):
        pipe.decode_latents(np.zeros((1, 1, 4, 6, 4), np.float32))
    with pytest.raises(ValueError, match="context-parallel"):
        CogVideoXPipeline.from_pretrained(folder_and_ref[0], mesh="sequence=-1", vae_decode="context-parallel",
                                          vae_tiling=True)
