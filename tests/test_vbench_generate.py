"""`eval generate`: VBench file names, resume, and no counting of half-written files."""
import os

import pytest

from cogvideox_jax.cli import main

pytest.importorskip("torch")
pytest.importorskip("diffusers")
from cogvideox_jax_oracles.pipeline_oracle import make_pipeline_folder  # noqa: E402


def test_generate_names_and_resume(tmp_path):
    folder, _ = make_pipeline_folder(tmp_path, "2b")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a dog running\na cat sleeping\n")
    out = tmp_path / "videos"
    out.mkdir()
    stale = out / "a cat sleeping-1.partial.mp4"  # a half-written file from an interrupted run
    stale.write_bytes(b"\x00" * 10)
    argv = ["eval", "generate", "--diffusers", folder, "--prompts-file", str(prompts), "--videos-per-prompt", "2",
            "--out", str(out), "--frames", "9", "--height", "32", "--width", "48", "--steps", "1", "--batch-size", "2"]
    assert main(argv) == 0
    names = sorted(f for f in os.listdir(out) if not f.endswith(".partial.mp4"))
    assert names == ["a cat sleeping-0.mp4", "a cat sleeping-1.mp4", "a dog running-0.mp4", "a dog running-1.mp4"]
    mtimes = {n: os.path.getmtime(out / n) for n in names}
    os.remove(out / "a dog running-1.mp4")
    assert main(argv) == 0  # resumes: only the missing video is generated again
    assert (out / "a dog running-1.mp4").exists()
    assert all(os.path.getmtime(out / n) == mtimes[n] for n in names if n != "a dog running-1.mp4")
