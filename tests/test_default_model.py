"""The shipped default model (``cogvideox_jax/default_model/shapes``, trained by ``train-shapes``):
it loads on a fresh install and samples a video from a prompt through the CLI with no checkpoint
argument. (Its prompt adherence is measured by ``train-shapes``' eval stage and reported in
BENCHMARKS.md, not asserted here.)"""
from __future__ import annotations

import os

from cogvideox_jax.pipeline.default_model import default_checkpoint, sampling_defaults


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


def test_packaged_sampling_settings_are_the_recipes():
    """``sampling.json`` in the package is what ``train-shapes``' checkpoint stage writes for the default
    recipe (steps, guidance, contrast guidance, best-of-N selection), so a reinstall reproduces it."""
    import dataclasses
    import json

    from configs.shapes import get_config

    recipe = json.loads(json.dumps(dataclasses.asdict(get_config().sampling)))
    assert sampling_defaults(default_checkpoint()) == recipe
