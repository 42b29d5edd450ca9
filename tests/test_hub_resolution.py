"""Hugging Face Hub ids as pipeline paths (``pipeline/hub.py``): resolved offline from a cache laid out as
the hub client lays it out, local folders winning, only the needed files requested online, and a clear
error naming the id when it is nowhere."""
import os
import shutil

import numpy as np
import pytest

from cogvideox_jax.pipeline import CogVideoXPipeline, hub
from cogvideox_jax.pipeline.components import local_pipeline

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("huggingface_hub")
from cogvideox_jax_oracles.pipeline_oracle import make_pipeline_folder  # noqa: E402

REPO = "tiny-org/CogVideoX-tiny"
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_pipeline_folder(tmp_path_factory.mktemp("pipe"), "5b")[0]


@pytest.fixture
def offline_cache(folder, tmp_path, monkeypatch):
    """``HF_HUB_CACHE/models--tiny-org--CogVideoX-tiny/{refs/main, snapshots/<sha>/...}``, offline."""
    cache = tmp_path / "hf-cache"
    repo = cache / ("models--" + REPO.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / SHA)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)   # no local folder named like the id
    return repo / "snapshots" / SHA


def test_hub_id_resolves_offline_from_the_cache(offline_cache, folder):
    assert hub.is_hub_id(REPO) and not hub.is_hub_id("./" + REPO) and not hub.is_hub_id("/abs/path")
    assert os.path.samefile(local_pipeline(REPO), offline_cache)
    pipe = CogVideoXPipeline.from_pretrained(REPO)
    kw = dict(num_frames=9, height=32, width=48, num_inference_steps=2, seed=0, progress=False)
    np.testing.assert_array_equal(pipe("a red circle", **kw), CogVideoXPipeline.from_pretrained(folder)("a red circle",
                                                                                                     **kw))


def test_cli_sample_and_convert_take_a_hub_id(offline_cache, tmp_path):
    from cogvideox_jax.cli import main

    out = str(tmp_path / "v.mp4")
    assert main(["sample", "--diffusers", REPO, "--prompt", "a red circle", "--steps", "1", "--out", out]) == 0
    assert os.path.getsize(out) > 0
    assert main(["convert", "--diffusers", REPO, "--out", str(tmp_path / "ckpt")]) == 0
    assert (tmp_path / "ckpt" / "cogvideox_jax.json").exists()


def test_missing_id_offline_is_an_error_naming_it(offline_cache, tmp_path, capsys):
    from cogvideox_jax.cli import main

    with pytest.raises(hub.HubResolutionError, match="tiny-org/not-there.*HF_HUB_OFFLINE"):
        CogVideoXPipeline.from_pretrained("tiny-org/not-there")
    with pytest.raises(SystemExit) as e:
        main(["sample", "--diffusers", "tiny-org/not-there", "--prompt", "x", "--out", str(tmp_path / "x.mp4")])
    assert e.value.code == 2 and "tiny-org/not-there" in capsys.readouterr().err


def test_a_local_folder_of_that_name_wins(offline_cache, folder, tmp_path):
    local = tmp_path / "tiny-org" / "CogVideoX-tiny"
    shutil.copytree(folder, local)   # cwd is tmp_path: the id is now also a relative local path
    assert not hub.is_hub_id(REPO)
    assert os.path.samefile(local_pipeline(REPO), local)


def test_online_downloads_only_the_requested_components(offline_cache, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_snapshot_download(repo_id, **kw):
        calls.append((repo_id, kw))
        return str(offline_cache)

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    assert hub.snapshot(REPO, ("vae",), revision="v1") == str(offline_cache)
    (_, first), (_, second) = calls
    assert first["allow_patterns"] == list(hub.ROOT_FILES) and first["revision"] == "v1"
    assert not first["local_files_only"] and first["cache_dir"] == os.environ["HF_HUB_CACHE"]
    allow = second["allow_patterns"]
    assert "vae/*.safetensors" in allow and "tokenizer/*" in allow and "scheduler/*" in allow
    assert not any(p.startswith(("transformer", "text_encoder")) for p in allow)
    assert "*.bin" in second["ignore_patterns"] and "*.fp16.safetensors" in second["ignore_patterns"]
