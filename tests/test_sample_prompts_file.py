"""``cogvideox-jax sample --prompts-file``: stable names, per-prompt seeds (each video is its single-prompt
sample), batches over the mesh's data axis, resumption, and two JAX processes on loopback each writing
their share once."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from cogvideox_jax.cli import main
from cogvideox_jax.pipeline.prompts_file import read_prompts, slug, video_name

pytest.importorskip("torch")
pytest.importorskip("diffusers")
from cogvideox_jax_oracles.pipeline_oracle import make_pipeline_folder  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "launch"))
import local_multiprocess  # noqa: E402

PROMPTS = ["A small red circle moves to the left.", "a blue square, drifting up!", "a green star", "a cross"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_pipeline_folder(tmp_path_factory.mktemp("pipe"), "5b")[0]


def _prompts_file(path, prompts):
    path.write_text("# a comment\n\n" + "\n".join(prompts) + "\n")
    return str(path)


def test_names_and_prompt_lines(tmp_path):
    f = _prompts_file(tmp_path / "p.txt", PROMPTS)
    assert read_prompts(f) == PROMPTS
    assert video_name(3, PROMPTS[1]) == "00003-a-blue-square-drifting-up.mp4"
    assert slug("  !!! ") == "prompt" and len(slug("word " * 40)) <= 60


def test_prompts_file_batches_resumes_and_matches_single_prompt_samples(folder, tmp_path, capsys):
    from cogvideox_jax.data.video_io import read_video_uint8

    f = _prompts_file(tmp_path / "p.txt", PROMPTS[:3])
    out = tmp_path / "videos"
    common = ["--diffusers", folder, "--steps", "2", "--seed", "10", "--no-compile-cache"]
    assert main(["sample", "--prompts-file", f, "--out-dir", str(out), "--mesh", "data=2,fsdp=4"] + common) == 0
    names = sorted(os.listdir(out))
    assert names == [video_name(i, p) for i, p in enumerate(PROMPTS[:3])]
    assert "0 of 3 videos already" in capsys.readouterr().out
    # prompt i is `sample --prompt p_i --seed 10 + i` (the batch of two changes only float noise)
    single = str(tmp_path / "single.mp4")
    assert main(["sample", "--prompt", PROMPTS[1], "--out", single] + common[:-3] + ["--seed", "11",
                                                                                      "--no-compile-cache"]) == 0
    a = read_video_uint8(single).astype(np.int32)
    b = read_video_uint8(out / names[1]).astype(np.int32)
    assert a.shape == b.shape == (9, 32, 48, 3) and np.abs(a - b).mean() < 0.5
    assert np.abs(a - read_video_uint8(out / names[0]).astype(np.int32)).mean() > 2   # other prompt / seed
    # a rerun skips them; a removed one is redone
    os.remove(out / names[2])
    capsys.readouterr()
    assert main(["sample", "--prompts-file", f, "--out-dir", str(out)] + common) == 0
    text = capsys.readouterr().out
    assert "2 of 3 videos already" in text and f"wrote 1 videos to {out}: {names[2]}" in text


def test_two_processes_write_each_video_once(folder, tmp_path):
    f = _prompts_file(tmp_path / "p.txt", PROMPTS)
    out = tmp_path / "videos"

    def run_all():
        port = local_multiprocess.free_port()
        env = local_multiprocess.worker_env(2)
        cmd = [sys.executable, "-m", "cogvideox_jax.cli", "sample", "--diffusers", folder, "--prompts-file", f,
               "--out-dir", str(out), "--steps", "2", "--mesh", "data=2", "--no-compile-cache",
               "--coordinator", f"localhost:{port}", "--num-processes", "2"]
        procs = [subprocess.Popen(cmd + ["--process-id", str(i)], env=env, cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for i in range(2)]
        outs = []
        for p in procs:
            try:
                outs.append(p.communicate(timeout=400)[0])
            except subprocess.TimeoutExpired:
                for q in procs:
                    q.kill()
                raise
        for p, text in zip(procs, outs):
            assert p.returncode == 0, text[-3000:]
        return [re.search(r"wrote (\d+) videos to \S+?(?::\s*(.*))?$", t, re.M).groups() for t in outs]

    first = run_all()
    written = [set((names or "").split()) for _, names in first]
    assert written[0] and written[1] and not written[0] & written[1]
    assert written[0] | written[1] == set(os.listdir(out)) == {video_name(i, p) for i, p in enumerate(PROMPTS)}
    assert written[0] == {video_name(i, PROMPTS[i]) for i in (0, 2)}      # process p owns i % 2 == p
    mtimes = {n: os.path.getmtime(out / n) for n in os.listdir(out)}
    assert [int(n) for n, _ in run_all()] == [0, 0]                       # a rerun skips them all
    assert mtimes == {n: os.path.getmtime(out / n) for n in os.listdir(out)}
