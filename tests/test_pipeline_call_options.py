"""diffusers' call options on ``CogVideoXPipeline.__call__``: ``num_videos_per_prompt``, per-video seeds,
``output_type="latent"``, ``callback_on_step_end``, ``max_sequence_length`` (against diffusers), and bf16
weights staying bf16 (tiny 5b-style pipeline)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cogvideox_jax.pipeline import CogVideoXPipeline

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
from cogvideox_jax_oracles.pipeline_oracle import make_pipeline_folder, to_torch_latents  # noqa: E402
from tests.test_pipeline_parity import _same_scheduler_noise  # noqa: E402

KW = dict(num_frames=9, height=32, width=48, num_inference_steps=3, guidance_scale=6.0, progress=False)
P1, P2 = "A small red circle moves slowly to the left.", "a blue square"


@pytest.fixture(scope="module")
def folder_and_ref(tmp_path_factory):
    return make_pipeline_folder(tmp_path_factory.mktemp("pipe"), "5b")


@pytest.fixture(scope="module")
def pipe(folder_and_ref):
    return CogVideoXPipeline.from_pretrained(folder_and_ref[0])


def test_num_videos_per_prompt_is_prompt_major(pipe):
    got = pipe([P1, P2], negative_prompt=["", "blurry"], num_videos_per_prompt=2, seed=1, **KW)
    want = pipe([P1, P1, P2, P2], negative_prompt=["", "", "blurry", "blurry"], seed=1, **KW)
    assert got.shape == (4, 9, 32, 48, 3)
    np.testing.assert_array_equal(got, want)
    assert np.abs(got[0] - got[1]).mean() > 1e-3          # two videos of one prompt differ
    with pytest.raises(ValueError, match="num_videos_per_prompt"):
        pipe(P1, num_videos_per_prompt=0, **KW)


def test_per_video_seeds_give_each_video_its_single_call(pipe):
    alone = {s: pipe(p, seed=s, **KW)[0] for p, s in ((P1, 5), (P2, 7))}
    np.testing.assert_allclose(pipe(P1, seed=[5], **KW)[0], alone[5], atol=1e-6, rtol=0)
    both = pipe([P1, P2], seed=[5, 7], **KW)
    # the batch of two changes only the floating-point order of the batched matmuls
    np.testing.assert_allclose(both[0], alone[5], atol=1e-4, rtol=0)
    np.testing.assert_allclose(both[1], alone[7], atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="one per video"):
        pipe([P1, P2], seed=[5], **KW)


def test_latent_output_decodes_to_the_same_video(pipe):
    video = pipe(P1, seed=2, **KW)
    latents = pipe(P1, seed=2, output_type="latent", **KW)
    assert latents.shape == (1, 3, 4, 6, 4) and latents.dtype == np.float32
    np.testing.assert_array_equal(pipe.latents_to_video(latents), video)
    with pytest.raises(ValueError, match="output_type"):
        pipe(P1, output_type="pil", **KW)


def test_callback_on_step_end(pipe):
    plain = pipe(P1, seed=4, **KW)
    seen = []

    def record(p, i, t, tensors):
        assert p is pipe and set(tensors) == {"latents"}
        seen.append((i, t, tensors["latents"].shape))

    np.testing.assert_allclose(pipe(P1, seed=4, callback_on_step_end=record, **KW), plain, atol=1e-5, rtol=0)
    from cogvideox_jax.diffusion.sampling_schedule import make_sampling_schedule

    timesteps = np.asarray(make_sampling_schedule(pipe.components.scheduler_config, 3).timesteps)
    assert [(i, t) for i, t, _ in seen] == list(enumerate(timesteps.tolist()))
    assert all(s == (1, 3, 4, 6, 4) for _, _, s in seen)

    # returned latents replace the loop's; pipe._interrupt skips the remaining steps
    zeros = pipe(P1, seed=4, output_type="latent", callback_on_step_end=lambda p, i, t, d:
                 {"latents": jnp.zeros_like(d["latents"])} if i == 2 else None, **KW)
    np.testing.assert_array_equal(zeros, 0.0)
    calls = []

    def stop(p, i, t, d):
        calls.append(i)
        p._interrupt = i == 0

    assert pipe(P1, seed=4, callback_on_step_end=stop, **KW).shape == plain.shape
    assert calls == [0] and pipe.interrupt


def test_max_sequence_length_matches_diffusers(folder_and_ref, pipe, monkeypatch, tmp_path):
    _, ref_pipe = folder_and_ref
    seed, shape = 3, (1, 3, 4, 6, 4)
    latents = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    with _same_scheduler_noise(monkeypatch, ref_pipe, seed, (1, 3, 4, 4, 6)):
        ref = ref_pipe(prompt=P1, negative_prompt="", num_frames=9, height=32, width=48, num_inference_steps=3,
                       guidance_scale=6.0, latents=to_torch_latents(latents), max_sequence_length=64,
                       output_type="np").frames
    got = pipe(P1, negative_prompt="", seed=seed, latents=latents, max_sequence_length=64, **KW)
    np.testing.assert_allclose(got, np.asarray(ref, np.float32), atol=2e-3, rtol=0)
    assert np.abs(got - pipe(P1, seed=seed, latents=latents, **KW)).max() > 1e-4   # the length mattered
    two_b, _ = make_pipeline_folder(tmp_path, "2b")
    with pytest.raises(ValueError, match="RoPE"):  # 2b's sin-cos table is laid out for 226 text tokens
        CogVideoXPipeline.from_pretrained(two_b)(P1, max_sequence_length=64, **KW)


def test_bf16_weights_stay_bf16(folder_and_ref):
    pipe = CogVideoXPipeline.from_pretrained(folder_and_ref[0], param_dtype=jnp.bfloat16, mesh="data=2,fsdp=4")
    names = ("transformer", "vae", "text_encoder")

    def dtypes():
        return {n: {x.dtype for x in jax.tree_util.tree_leaves(pipe.components.params(n))} for n in names}

    assert dtypes() == {n: {jnp.dtype(jnp.bfloat16)} for n in names}
    assert any(not x.sharding.is_fully_replicated
               for x in jax.tree_util.tree_leaves(pipe.components.transformer_params))
    video = pipe(P1, seed=0, **KW)
    assert np.isfinite(video).all() and video.shape == (1, 9, 32, 48, 3)
    assert dtypes() == {n: {jnp.dtype(jnp.bfloat16)} for n in names}
