"""Contrast guidance (``cogvideox_jax/shapes``): the contrast prompts, the guided prediction, and sampling
with it on the pipeline's ``extra_guidance`` hook (off by default, where sampling stays the reference's)."""
from __future__ import annotations

import types

import jax.numpy as jnp
import numpy as np
import pytest

from cogvideox_jax.pipeline.cogvideox_pipeline import CogVideoXPipeline
from cogvideox_jax.shapes.contrast_prompts import contrast_batch, contrast_guidance, contrast_prompts
from cogvideox_jax.shapes.sampling import sample

SHAPES = ("circle", "square", "cross")


def test_contrast_prompts_swap_the_named_word():
    assert contrast_prompts("a red Circle moves left", [SHAPES]) == ["a red square moves left",
                                                                    "a red cross moves left"]
    # whole words only: "across" is not "cross"
    assert contrast_prompts("a white square drifting across a black background", [SHAPES]) == [
        "a white circle drifting across a black background", "a white cross drifting across a black background"]
    assert contrast_prompts("a blue star", [SHAPES]) == []                 # no word of the group
    assert contrast_prompts("a circle and a square", [SHAPES]) == []       # ambiguous: two of them
    assert contrast_prompts("a circle inside a circle", [SHAPES]) == []    # named twice
    assert contrast_prompts("a red circle", [SHAPES, ("red", "blue")]) == [
        "a red square", "a red cross", "a blue circle"]


def test_contrast_guidance_matches_the_formula():
    rng = np.random.default_rng(0)
    b, k, g, w = 3, 2, 6.0, 4.0
    vu, vc = rng.normal(size=(2, b, 5)).astype(np.float32)
    va = rng.normal(size=(k, b, 5)).astype(np.float32)
    mask = np.asarray([[1, 1, 0], [1, 0, 0]], np.float32)   # sample 0: two contrasts, 1: one, 2: none
    cfg = vu + g * (vc - vu)
    got = np.asarray(contrast_guidance(jnp.asarray(cfg), jnp.asarray(vc), jnp.asarray(va), 0,
                                       (jnp.float32(w), jnp.asarray(mask))))
    want = cfg.copy()
    want[0] += w * (vc[0] - (va[0, 0] + va[1, 0]) / 2)
    want[1] += w * (vc[1] - va[0, 1])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_contrast_batch_is_contrast_major_and_padded_with_the_prompt():
    codes = {}
    stub = types.SimpleNamespace(encode_prompt=lambda ps, _=None: jnp.asarray(
        [[[codes.setdefault(p, len(codes))]] for p in ps], jnp.float32))
    prompts = ["p0", "p1", "p2"]
    text, mask = contrast_batch(stub, prompts, [["a", "b"], ["c"], []])
    order = [p for p, _ in sorted(codes.items(), key=lambda kv: kv[1])]
    assert text.shape == (2, 3, 1, 1)
    assert [order[int(i)] for i in np.asarray(text).ravel()] == ["a", "c", "p2", "b", "p1", "p2"]
    np.testing.assert_array_equal(np.asarray(mask), [[1, 1, 0], [1, 0, 0]])
    assert contrast_batch(stub, prompts, [[], [], []]) == (None, None)
    with pytest.raises(ValueError, match="contrast prompt lists"):
        contrast_batch(stub, prompts, [["a"]])


def test_pipeline_contrast_guidance_on_the_default_model():
    from cogvideox_jax.shapes.default_model import default_checkpoint

    pipe = CogVideoXPipeline.from_pretrained(default_checkpoint())
    prompts = ["a large red cross moves to the left", "a small blue circle drifting upward"]
    kw = dict(num_inference_steps=2, guidance_scale=6.0, seed=1, progress=False)
    plain = pipe(prompts, **kw)
    # off (scale 0) is exactly the reference sampling
    np.testing.assert_array_equal(sample(pipe, prompts, contrast_prompts=[["x"], ["y"]], contrast_scale=0.0, **kw),
                                  plain)
    # contrasting a prompt with itself adds nothing
    same = sample(pipe, prompts, contrast_prompts=[[p] for p in prompts], contrast_scale=4.0, **kw)
    np.testing.assert_allclose(same, plain, atol=2e-5)
    # real contrasts change the sample
    real = sample(pipe, prompts, contrast_prompts=[contrast_prompts(p, [("circle", "cross", "square")])
                                                  for p in prompts], contrast_scale=4.0, **kw)
    assert real.shape == plain.shape
    assert np.abs(real - plain).mean() > 1e-3


def test_shapes_recipe_contrasts_the_datasets_shape_words():
    from cogvideox_jax.shapes.dataset.vocabulary import SHAPES as DATASET_SHAPES
    from cogvideox_jax.shapes.config import SamplingConfig

    assert sorted(SamplingConfig().contrast_words) == sorted(DATASET_SHAPES)


def test_cli_sample_applies_the_checkpoints_contrast_guidance(tmp_path):
    from cogvideox_jax.cli import main
    from cogvideox_jax.data.video_io import read_video_uint8
    from cogvideox_jax.pipeline.components import sampling_defaults
    from cogvideox_jax.shapes.default_model import default_checkpoint

    assert sampling_defaults(default_checkpoint())["contrast_scale"] > 0
    base = ["sample", "--prompt", "a large red cross moves to the left", "--steps", "3"]
    videos = {}
    for name, extra in {"default": [], "off": ["--contrast-scale", "0"]}.items():
        out = str(tmp_path / f"{name}.mp4")
        assert main(base + extra + ["--out", out]) == 0
        videos[name] = read_video_uint8(out).astype(np.int32)
    assert np.abs(videos["default"] - videos["off"]).mean() > 0.5


def test_cli_contrast_words_need_a_scale():
    from cogvideox_jax.cli import main

    with pytest.raises(SystemExit, match="--contrast-scale"):
        main(["sample", "--prompt", "a red circle", "--contrast-words", "circle,square", "--contrast-scale", "0"])
