"""Video-to-video (``pipe(..., video=, strength=)``) against diffusers' ``CogVideoXVideoToVideoPipeline`` on
tiny random pipelines, with the same added noise and per-step scheduler noise: a 5b-style (DPM, RoPE,
dynamic CFG) and a 1.5-style (patch_size_t = 2: the latent count must be even, no padding) model."""
import numpy as np
import pytest

from cogvideox_jax.pipeline import CogVideoXPipeline

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
from cogvideox_jax_oracles.pipeline_oracle import make_pipeline_folder, to_torch_latents  # noqa: E402
from tests.test_pipeline_parity import _same_scheduler_noise  # noqa: E402

CASES = [  # style, frames, steps, strength, dynamic cfg
    ("5b", 9, 4, 0.5, True),
    ("1.5", 13, 4, 0.8, False),
]


@pytest.mark.parametrize("style,frames,steps,strength,dynamic", CASES, ids=[c[0] for c in CASES])
def test_video_to_video_parity(tmp_path, monkeypatch, style, frames, steps, strength, dynamic):
    from diffusers import CogVideoXVideoToVideoPipeline
    from PIL import Image
    import diffusers.pipelines.cogvideo.pipeline_cogvideox_video2video as v2v

    folder, t2v = make_pipeline_folder(tmp_path, style)
    ref_pipe = CogVideoXVideoToVideoPipeline(**t2v.components)
    ours = CogVideoXPipeline.from_pretrained(folder)
    height, width, seed = 32, 48, 3
    lat_frames = (frames - 1) // 4 + 1
    shape = (1, lat_frames, height // 8, width // 8, 4)
    noise = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    rng = np.random.default_rng(1)
    video = [Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)) for _ in range(frames)]
    prompt = "A small red circle moves slowly to the left."
    # the reference samples the video posterior with its generator (the mode on both sides) and draws the
    # added noise with randn_tensor (ours instead)
    monkeypatch.setattr(v2v, "retrieve_latents", lambda out, generator=None, sample_mode="sample":
                        out.latent_dist.mode())
    monkeypatch.setattr(v2v, "randn_tensor", lambda shape, **kw: to_torch_latents(noise).reshape(shape))
    with _same_scheduler_noise(monkeypatch, ref_pipe, seed, (1, lat_frames, 4, height // 8, width // 8)):
        ref = ref_pipe(video=video, prompt=prompt, negative_prompt="", height=height, width=width,
                       num_inference_steps=steps, strength=strength, guidance_scale=6.0, use_dynamic_cfg=dynamic,
                       output_type="np").frames
    got = ours(prompt, negative_prompt="", video=video, strength=strength, height=height, width=width,
               num_inference_steps=steps, guidance_scale=6.0, use_dynamic_cfg=dynamic, seed=seed, latents=noise,
               image_latent_mode="mode", progress=False)
    ref = np.asarray(ref, np.float32)
    # the causal decoder keeps a first frame only for an odd latent count: 4 latents decode to 16 frames
    # from a 13-frame input (diffusers does the same)
    out_frames = frames if lat_frames % 2 else 4 * lat_frames
    assert got.shape == ref.shape == (1, out_frames, height, width, 3)
    np.testing.assert_allclose(got, ref, atol=2e-3, rtol=0)
    if style == "1.5":  # odd latent counts: diffusers' error, before anything runs
        with pytest.raises(ValueError, match="patch_size_t"):
            ours(prompt, video=video[:9], num_inference_steps=steps, progress=False)
    else:  # the video's frames are the clip's; a fully-denoised strength differs from the input
        with pytest.raises(ValueError, match="4N\\+1"):
            ours(prompt, video=video[:8], num_inference_steps=steps, progress=False)
        with pytest.raises(ValueError, match="strength"):
            ours(prompt, video=video, strength=0.1, num_inference_steps=4, progress=False)


def test_cli_video_to_video(tmp_path):
    from cogvideox_jax.cli import main
    from cogvideox_jax.data.video_io import read_video_uint8
    from cogvideox_jax.data.video_io import save_video

    folder, _ = make_pipeline_folder(tmp_path, "5b")
    src = str(tmp_path / "in.mp4")
    save_video(src, np.random.default_rng(0).uniform(0, 1, (9, 64, 96, 3)).astype(np.float32), 8.0)
    out = str(tmp_path / "out.mp4")
    argv = ["sample", "--diffusers", folder, "--prompt", "a red circle", "--video", src, "--strength", "0.5",
            "--steps", "2", "--height", "32", "--width", "48", "--out", out, "--no-compile-cache"]
    assert main(argv) == 0
    assert read_video_uint8(out).shape == (9, 32, 48, 3)          # resized, the video's frame count
    with pytest.raises(SystemExit):
        main(argv[:-4] + ["--frames", "17", "--out", out])           # --frames disagrees with the video
