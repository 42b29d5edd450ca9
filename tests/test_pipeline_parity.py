"""End to end: diffusers' own CogVideoX pipelines vs ours from the same initial latents and noise."""
import contextlib

import jax
import numpy as np
import pytest

from cogvideox_jax.pipeline import CogVideoXPipeline
from cogvideox_jax.pipeline.denoise_loop import step_noise

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
from diffusers.schedulers import scheduling_dpm_cogvideox  # noqa: E402

from cogvideox_jax_oracles.pipeline_oracle import make_pipeline_folder, to_torch_latents  # noqa: E402


@contextlib.contextmanager
def _same_scheduler_noise(monkeypatch, pipe, seed, shape_btchw):
    """Make diffusers' DPM step draw our per-step noise (``step_noise(fold_in(key, i))``)."""
    noise_key = jax.random.split(jax.random.PRNGKey(seed), 3)[1]
    b, t, c, h, w = shape_btchw
    state = {"i": 0}
    original_step = pipe.scheduler.step

    def step(*args, **kwargs):
        out = original_step(*args, **kwargs)
        state["i"] += 1
        return out

    def randn(shape, **kw):
        n = np.asarray(step_noise(noise_key, state["i"], (b, t, h, w, c)))
        return torch.from_numpy(n.transpose(0, 1, 4, 2, 3).copy()).reshape(shape)

    monkeypatch.setattr(scheduling_dpm_cogvideox, "randn_tensor", randn)
    monkeypatch.setattr(pipe.scheduler, "step", step)
    yield


CASES = [
    # style, frames, steps, guidance, dynamic cfg
    ("2b", 9, 4, 6.0, False),
    ("5b", 9, 4, 6.0, True),
    ("5b-i2v", 9, 3, 6.0, False),
    ("1.5", 17, 3, 6.0, False),
]


@pytest.mark.parametrize("style,frames,steps,guidance,dynamic", CASES, ids=[c[0] for c in CASES])
def test_end_to_end_parity(tmp_path, monkeypatch, style, frames, steps, guidance, dynamic):
    folder, ref_pipe = make_pipeline_folder(tmp_path, style)
    ours = CogVideoXPipeline.from_pretrained(folder)
    height, width, seed = 32, 48, 3
    prompt = "A small red circle moves slowly to the left."
    lat_frames = (frames - 1) // 4 + 1
    pt = ours.transformer_config.patch_size_t
    if pt:
        lat_frames += (-lat_frames) % pt
    shape = (1, lat_frames, height // 8, width // 8, 4)
    latents = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    image = None
    kwargs = {}
    if style.endswith("i2v"):
        image = np.random.default_rng(1).uniform(0, 1, (height, width, 3)).astype(np.float32)
        from PIL import Image

        kwargs["image"] = Image.fromarray((image * 255).round().astype(np.uint8))
        image = kwargs["image"]
        # the reference samples the image posterior with its generator; use the mode on both sides
        import diffusers.pipelines.cogvideo.pipeline_cogvideox_image2video as i2v

        monkeypatch.setattr(i2v, "retrieve_latents", lambda out, generator=None, sample_mode="sample":
                            out.latent_dist.mode())
    with _same_scheduler_noise(monkeypatch, ref_pipe, seed, (1, lat_frames, 4, height // 8, width // 8)):
        ref = ref_pipe(prompt=prompt, negative_prompt="", num_frames=frames, height=height, width=width,
                       num_inference_steps=steps, guidance_scale=guidance, use_dynamic_cfg=dynamic,
                       latents=to_torch_latents(latents), output_type="np", **kwargs).frames
    got = ours(prompt, negative_prompt="", num_frames=frames, height=height, width=width,
               num_inference_steps=steps, guidance_scale=guidance, use_dynamic_cfg=dynamic, seed=seed,
               latents=latents, image=image, image_latent_mode="mode", progress=False)
    ref = np.asarray(ref, np.float32)
    assert got.shape == ref.shape == (1, frames, height, width, 3)
    np.testing.assert_allclose(got, ref, atol=2e-3, rtol=0)


def test_invalid_frame_count_error(tmp_path):
    folder, _ = make_pipeline_folder(tmp_path, "2b")
    pipe = CogVideoXPipeline.from_pretrained(folder)
    with pytest.raises(ValueError, match="8N\\+1"):
        pipe("x", num_frames=12, height=32, width=48, num_inference_steps=1)
    with pytest.raises(ValueError, match="multiple of 16"):
        pipe("x", num_frames=9, height=30, width=48, num_inference_steps=1)
