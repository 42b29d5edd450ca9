"""The shipped default model (``cogvideox_jax/default_model/shapes``, trained by ``train-shapes``):
it loads on a fresh install and samples a video from a prompt through the CLI with no checkpoint
argument, and gives the video it gave when it shipped. (Its prompt adherence is measured by
``train-shapes``' eval stage and reported in cogvideox_jax/shapes/README.md, not asserted here.)"""
from __future__ import annotations

import os

from cogvideox_jax.pipeline.components import sampling_defaults
from cogvideox_jax.shapes.default_model import default_checkpoint


def test_default_model_is_packaged_and_small():
    path = default_checkpoint()
    size = sum(os.path.getsize(os.path.join(d, n)) for d, _, files in os.walk(path) for n in files)
    assert size < 50 * 2 ** 20, size
    assert sampling_defaults(path)["steps"] > 0


GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "default_model_sample.npz")


def test_cli_sample_of_the_default_model_is_the_recorded_video(tmp_path):
    """README's third command, ``cogvideox-jax sample --prompt "a red circle moves to the left"``, gives
    the video recorded when the model shipped (``tests/golden/``, its frames quantized to 8 bits): bit for
    bit on the CPU type that recorded it; within one 8-bit level, on at most 0.5 % of the values, on
    others (XLA:CPU's code differs by instruction set). The mp4 it writes is a 9-frame 64x64 video."""
    import subprocess
    import sys

    import numpy as np

    from cogvideox_jax.compile_cache import host_key
    from cogvideox_jax.data.video_io import read_video_uint8

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out, frames = str(tmp_path / "video.mp4"), str(tmp_path / "frames.npy")
    # the command as a user runs it: its own process, without the suite's 8 devices and matmul precision
    script = ("import sys, numpy as np; import cogvideox_jax.data.video_io as c; save = c.save_video; "
              "c.save_video = lambda p, v, fps: (np.save(sys.argv[2], np.asarray(v)), save(p, v, fps)); "
              "from cogvideox_jax.cli import main; "
              "sys.exit(main(['sample', '--prompt', 'a red circle moves to the left', '--out', sys.argv[1]]))")
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    proc = subprocess.run([sys.executable, "-c", script, out, frames], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_video_uint8(out).shape == (9, 64, 64, 3)
    video = np.load(frames)
    golden = np.load(GOLDEN)
    got = np.clip(np.rint(video * 255.0), 0, 255).astype(np.uint8)
    if str(golden["host"]) == host_key():
        assert float(video.astype(np.float64).sum()) == float(golden["float_sum"])
        np.testing.assert_array_equal(got, golden["video"])
    else:
        diff = np.abs(got.astype(np.int16) - golden["video"].astype(np.int16))
        assert diff.max() <= 1 and (diff > 0).mean() <= 0.005, (diff.max(), (diff > 0).mean())


def test_packaged_sampling_settings_are_the_recipes():
    """``sampling.json`` in the package is what ``train-shapes``' checkpoint stage writes for the default
    recipe (steps, guidance, contrast guidance, best-of-N selection), so a reinstall reproduces it."""
    import dataclasses
    import json

    from cogvideox_jax.shapes.config import get_config

    recipe = json.loads(json.dumps(dataclasses.asdict(get_config().sampling)))
    assert sampling_defaults(default_checkpoint()) == recipe
