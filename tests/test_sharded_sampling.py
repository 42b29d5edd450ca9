"""Sampling on a mesh (params sharded, CFG batch over ``data``, sequence-parallel attention) gives the
same video as single-device sampling."""
import jax
import numpy as np
import pytest

from cogvideox_jax.parallel.mesh import make_mesh
from cogvideox_jax.pipeline import CogVideoXPipeline

pytest.importorskip("torch")
pytest.importorskip("diffusers")
from cogvideox_jax_oracles import pipeline_oracle  # noqa: E402

# the 5b-style tiny pipeline with 4 heads, so Ulysses divides a sequence degree of 4
STYLE = "5b-4heads"
KW = dict(negative_prompt="", num_frames=9, height=32, width=48, num_inference_steps=2, guidance_scale=6.0,
          use_dynamic_cfg=True, seed=3, progress=False)
PROMPT = "A small red circle moves slowly to the left."


@pytest.fixture(scope="module")
def folder_and_reference(tmp_path_factory):
    tkw, sched, shift, vae = pipeline_oracle.STYLES["5b"]
    pipeline_oracle.STYLES[STYLE] = (dict(tkw, num_attention_heads=4, attention_head_dim=16), sched, shift, vae)
    try:
        folder, _ = pipeline_oracle.make_pipeline_folder(tmp_path_factory.mktemp("pipe"), STYLE)
    finally:
        del pipeline_oracle.STYLES[STYLE]
    single = CogVideoXPipeline.from_pretrained(folder)
    return folder, single(PROMPT, **KW)


def _check_sharded(pipe, mesh_shape):
    leaf = pipe.components.transformer_params["transformer_blocks"]["ff"]["proj_in"]["kernel"]
    assert dict(leaf.sharding.mesh.shape) == mesh_shape
    assert pipe.components.transformer.mesh is pipe.mesh


@pytest.mark.parametrize("mesh,scheme", [
    ("data=2,sequence=4", "ulysses"),
    pytest.param("mesh-object", "ring", marks=pytest.mark.slow),  # ~80 s more on 2 cores
])
def test_sharded_sampling_matches_single_device(folder_and_reference, mesh, scheme):
    folder, ref = folder_and_reference
    if mesh == "mesh-object":
        mesh = make_mesh("data=2,fsdp=2,sequence=2")
        assert isinstance(mesh, jax.sharding.Mesh)
    pipe = CogVideoXPipeline.from_pretrained(folder, mesh=mesh, sequence_parallel=scheme)
    expected_shape = dict(make_mesh(mesh).shape)
    _check_sharded(pipe, expected_shape)
    assert pipe.transformer_config.sequence_parallel == scheme
    got = pipe(PROMPT, **KW)
    assert got.shape == ref.shape == (1, 9, 32, 48, 3)
    assert np.std(ref) > 0.01  # a real video, not a constant
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)  # fp32 reduction order only (1/255 = 4e-3)


def test_sharded_contrast_guidance_matches_single_device(folder_and_reference):
    """Contrast guidance (the shapes project's, on the ``extra_guidance`` hook) stacks (2 + K) x B rows
    through the CFG batch's sharding: with a stack the data axis divides (K = 2: 4 rows) and one it does
    not (K = 1: 3 rows, replicated), the video equals single-device sampling's."""
    from cogvideox_jax.shapes.sampling import sample

    folder, plain = folder_and_reference
    single = CogVideoXPipeline.from_pretrained(folder)
    sharded = CogVideoXPipeline.from_pretrained(folder, mesh="data=2,sequence=4", sequence_parallel="ulysses")
    for contrasts in (["A small red square moves slowly to the left.", "A small red cross moves slowly to the left."],
                      ["A small red square moves slowly to the left."]):
        kw = dict(KW, contrast_prompts=[contrasts], contrast_scale=3.0)
        ref = sample(single, PROMPT, **kw)
        assert np.abs(ref - plain).mean() > 1e-4  # the contrast term is there
        np.testing.assert_allclose(sample(sharded, PROMPT, **kw), ref, atol=1e-4, rtol=0)


def test_context_parallel_vae_decode_in_the_pipeline(folder_and_reference):
    """``vae_decode="context-parallel"`` decodes with the frames split over ``sequence`` and equals the
    single-device one-pass (``"whole"``) decode."""
    folder, _ = folder_and_reference
    whole = CogVideoXPipeline.from_pretrained(folder, vae_decode="whole")
    cp = CogVideoXPipeline.from_pretrained(folder, mesh="data=4,sequence=2", vae_decode="context-parallel")
    c = whole.vae_config.latent_channels
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (1, 3, 4, 6, c)))
    ref = np.asarray(whole.decode_latents(z))
    assert ref.shape == (1, 9, 32, 48, 3)
    np.testing.assert_allclose(np.asarray(cp.decode_latents(z)), ref, atol=1e-5 * np.abs(ref).max(), rtol=0)
    with pytest.raises(ValueError, match="sequence axis"):
        CogVideoXPipeline.from_pretrained(folder, vae_decode="context-parallel")
