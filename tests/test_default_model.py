"""The shipped default model (``cogvideox_jax/default_model/shapes``, trained by ``train-shapes``):
it loads on a fresh install and samples a video from a prompt through the CLI with no checkpoint
argument, and what it draws follows the prompt's color (checked by the shapes evaluator)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from cogvideox_jax.pipeline.default_model import DEFAULT_MODEL_DIR, default_checkpoint, sampling_defaults


def test_default_model_is_packaged_and_small():
    path = default_checkpoint()
    size = sum(os.path.getsize(os.path.join(d, n)) for d, _, files in os.walk(path) for n in files)
    assert size < 50 * 2 ** 20, size
    assert sampling_defaults(path)["steps"] > 0


def test_cli_sample_without_checkpoint_uses_the_default_model(tmp_path):
    from cogvideox_jax.cli import main
    from cogvideox_jax.data.video_io import read_video_uint8

    out = str(tmp_path / "video.mp4")
    assert main(["sample", "--prompt", "a red circle moves to the left", "--steps", "4", "--out", out]) == 0
    video = read_video_uint8(out)
    assert video.shape == (9, 64, 64, 3)


@pytest.mark.parametrize("prompt,color", [("a red circle moves to the left", "red"),
                                          ("a blue square moving up over a black background", "blue")])
def test_default_model_follows_the_prompt_color(prompt, color):
    from cogvideox_jax.eval.shapes.evaluator import evaluate_video
    from cogvideox_jax.pipeline import CogVideoXPipeline

    pipe = CogVideoXPipeline.from_pretrained(DEFAULT_MODEL_DIR)
    d = sampling_defaults(DEFAULT_MODEL_DIR)
    video = np.asarray(pipe(prompt, num_inference_steps=d["steps"], guidance_scale=d["guidance_scale"], seed=0,
                            progress=False))[0]
    assert video.shape == (9, 64, 64, 3)
    rec = evaluate_video(video, prompt, value_range=(0.0, 1.0))
    assert rec["pred"]["color"] == color, rec["pred"]
