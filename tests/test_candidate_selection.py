"""Best-of-N sampling with the model as its own verifier (``cogvideox_jax/shapes/candidate_selection.py``)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cogvideox_jax.shapes.candidate_selection import (CandidateSelection, best_candidates, caption_losses,
                                                        relative_prompt_loss)

AC = jnp.linspace(0.99, 0.05, 1000, dtype=jnp.float32)   # any ᾱ table


def _oracle_model(x_t, text, t):
    """The exact v of an x0 that is the constant ``text[:, 0, 0]``: the v-loss is 0 when the caption's
    constant is the clip's, and grows with their difference."""
    a = AC[t].reshape(-1, 1, 1, 1, 1)
    h = text[:, 0, 0].reshape(-1, 1, 1, 1, 1)
    eps = (x_t - jnp.sqrt(a) * h) / jnp.sqrt(1 - a)
    return jnp.sqrt(a) * eps - jnp.sqrt(1 - a) * h


def test_caption_losses_rank_the_caption_that_explains_the_clip():
    x0 = jnp.stack([jnp.full((2, 4, 4, 3), c, jnp.float32) for c in (0.5, -1.0, 2.0)])        # 3 clips
    captions = jnp.asarray([0.5, -1.0, 2.0, 0.0], jnp.float32)                               # 4 captions
    text = jnp.broadcast_to(captions[:, None, None, None], (4, 3, 2, 8))                     # (K, N, L, D)
    losses = np.asarray(caption_losses(_oracle_model, x0, text, AC, (50, 400), jax.random.PRNGKey(0), repeats=2))
    assert losses.shape == (3, 4)
    np.testing.assert_allclose(np.diag(losses[:, :3]), 0.0, atol=1e-5)
    assert (losses.argmin(axis=1) == np.arange(3)).all()
    # a larger mismatch costs more; the loss is (h − x0)² / (1 − ᾱ) per element, so it is noise-free here
    gap = np.asarray(captions)[None] - np.asarray([0.5, -1.0, 2.0])[:, None]
    want = np.mean([1 / (1 - float(AC[t])) for t in (50, 400)]) * gap ** 2
    np.testing.assert_allclose(losses, want, rtol=1e-4, atol=1e-5)


def test_object_weight_counts_the_object_cells_more():
    x0 = np.zeros((1, 1, 4, 4, 2), np.float32)
    x0[0, 0, 1, 1] = 3.0                                      # one object cell on a flat background
    text = jnp.zeros((1, 1, 2, 8))                            # the caption says: all zero
    plain, weighted = (float(caption_losses(_oracle_model, jnp.asarray(x0), text, AC, (100,), jax.random.PRNGKey(0),
                                            object_weight=w)[0, 0]) for w in (0.0, 4.0))
    np.testing.assert_allclose(weighted, 5.0 * plain, rtol=1e-5)   # all the error sits on the object cell


def test_relative_loss_ignores_padding_and_best_candidates_are_prompt_major():
    losses = jnp.asarray([[1.0, 3.0, 100.0], [2.0, 2.0, 2.0], [4.0, 1.0, 1.0], [5.0, 7.0, 7.0]])
    mask = jnp.asarray([[1, 0, 1, 0], [1, 0, 1, 0]], jnp.float32)    # prompts 1 and 3 have no contrasts
    rel = np.asarray(relative_prompt_loss(losses, mask))
    np.testing.assert_allclose(rel, [1 / (104 / 3), 1.0, 4 / 2, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(best_candidates(jnp.asarray([0.9, 0.5, 1.0, 0.7, 0.7, 0.8]), 3)), [1, 3])
    with pytest.raises(ValueError, match=">= 1"):
        CandidateSelection(candidates=0)


@pytest.fixture(scope="module")
def pipe():
    from cogvideox_jax.pipeline.cogvideox_pipeline import CogVideoXPipeline
    from cogvideox_jax.shapes.default_model import default_checkpoint

    return CogVideoXPipeline.from_pretrained(default_checkpoint())


def test_sampling_keeps_each_prompts_best_candidate(pipe):
    from cogvideox_jax.shapes.contrast_prompts import contrast_prompts
    from cogvideox_jax.shapes.sampling import sample

    prompts = ["a large red cross moves to the left", "a small blue circle drifting upward"]
    words = ("circle", "cross", "square")
    contrasts = [contrast_prompts(p, [words]) for p in prompts]
    n = 3
    sel = CandidateSelection(candidates=n, timesteps=(100, 300), repeats=1)
    f, h, w = pipe.default_size()
    shape = (2 * n, (f - 1) // 4 + 1, h // 8, w // 8, pipe.vae_config.latent_channels)
    noise = np.asarray(jax.random.normal(jax.random.PRNGKey(5), shape))
    kw = dict(num_inference_steps=3, guidance_scale=6.0, seed=1, progress=False, contrast_scale=4.0, latents=noise)
    best = sample(pipe, prompts, contrast_prompts=contrasts, selection=sel, output_type="latent", **kw)
    every = sample(pipe, [p for p in prompts for _ in range(n)], output_type="latent",
                   contrast_prompts=[c for c in contrasts for _ in range(n)], **kw)
    assert best.shape == (2,) + every.shape[1:]
    candidates = every                                        # (2n, ...) latents of every candidate
    # the kept one is, per prompt, the candidate with the lowest relative loss under its prompt
    cond = pipe.encode_prompt([p for p in prompts for _ in range(n)])
    others = jnp.stack([pipe.encode_prompt([c[k] for c in contrasts for _ in range(n)]) for k in range(2)])
    params = pipe.components.transformer_params
    fn = lambda x, txt, t: pipe.components.transformer.apply({"params": params}, x, txt, t)  # noqa: E731
    from cogvideox_jax.diffusion.training_targets import alphas_cumprod_table

    losses = caption_losses(fn, jnp.asarray(candidates), jnp.concatenate([cond[None], others]),
                            alphas_cumprod_table(pipe.components.scheduler_config), sel.timesteps,
                            jax.random.fold_in(jax.random.PRNGKey(1), 3), sel.repeats, sel.object_weight)
    rel = np.asarray(relative_prompt_loss(losses, jnp.ones((2, 2 * n)))).reshape(2, n)
    assert rel.argmin(axis=1).any()                     # not always the first candidate, so the check below tells
    for b in range(2):
        # (1e-3: the selection encodes each prompt once, `every` each copy: T5 batches of other sizes)
        np.testing.assert_allclose(best[b], every[b * n + rel[b].argmin()], atol=1e-3)
    assert np.abs(every[0] - every[1]).mean() > 1e-3      # the candidates do differ


def test_sampling_selection_errors(pipe):
    from cogvideox_jax.shapes.sampling import sample

    sel = CandidateSelection(candidates=2)
    with pytest.raises(ValueError, match="needs contrast_prompts"):
        sample(pipe, ["a red circle"], num_inference_steps=2, progress=False, selection=sel)
    # one candidate is plain sampling
    kw = dict(num_inference_steps=2, progress=False, seed=3, output_type="latent")
    np.testing.assert_array_equal(sample(pipe, ["a red circle"], selection=CandidateSelection(candidates=1), **kw),
                                  pipe(["a red circle"], **kw))


def test_cli_sample_uses_the_checkpoints_candidates_and_turns_them_off_without_a_shape_word(tmp_path, capsys):
    from cogvideox_jax.cli import main
    from cogvideox_jax.data.video_io import read_video_uint8
    from cogvideox_jax.pipeline.components import sampling_defaults
    from cogvideox_jax.shapes.default_model import default_checkpoint

    assert sampling_defaults(default_checkpoint())["candidates"] > 1
    videos = {}
    for name, extra in {"default": [], "one": ["--candidates", "1"]}.items():
        out = str(tmp_path / f"{name}.mp4")
        args = ["sample", "--prompt", "a large red cross moves to the left", "--steps", "2", "--out", out]
        assert main(args + extra) == 0
        videos[name] = read_video_uint8(out).astype(np.int32)
    assert np.abs(videos["default"] - videos["one"]).mean() > 0.5      # another noise draw, then a choice
    assert main(["sample", "--prompt", "a red blob moves left", "--steps", "2", "--out", str(tmp_path / "x.mp4")]) == 0
    assert "candidate selection off" in capsys.readouterr().out


def test_selection_on_a_mesh_keeps_the_single_device_candidates(pipe):
    """With the parameters sharded (fsdp) and the candidates' batch split over ``data``, the scoring
    (jitted without shardings) keeps the same candidates: the videos equal single-device sampling's."""
    from cogvideox_jax.pipeline.cogvideox_pipeline import CogVideoXPipeline
    from cogvideox_jax.shapes.contrast_prompts import contrast_prompts
    from cogvideox_jax.shapes.default_model import default_checkpoint
    from cogvideox_jax.shapes.sampling import sample

    prompts = ["a large red cross moves to the left", "a small blue circle drifting upward"]
    sel = CandidateSelection(candidates=2, timesteps=(100, 300), repeats=1)
    kw = dict(num_inference_steps=3, guidance_scale=6.0, seed=1, progress=False, contrast_scale=4.0, selection=sel,
              contrast_prompts=[contrast_prompts(p, [("circle", "cross", "square")]) for p in prompts])
    sharded = CogVideoXPipeline.from_pretrained(default_checkpoint(), mesh="data=2,fsdp=4")
    assert sharded.components.transformer.mesh is sharded.mesh
    assert any(len(leaf.sharding.device_set) == 8 and not leaf.sharding.is_fully_replicated
               for leaf in jax.tree_util.tree_leaves(sharded.components.transformer_params))
    np.testing.assert_allclose(sample(sharded, prompts, **kw), sample(pipe, prompts, **kw), atol=1e-4, rtol=0)
    # (a different candidate kept would differ by far more: test_pipeline_keeps_each_prompts_best_candidate)
