"""Prompt suites (package data), video discovery and the resumable generation plan."""
import json
import logging
import os

import pytest

from cogvideox_jax.eval.vbench import discovery, generation_plan, prompt_suites
from cogvideox_jax.eval.vbench.backends import vbench_adapter


@pytest.mark.parametrize(
    "dimension,size", [("human_action", 100), ("scene", 86), ("dynamic_degree", 72), ("multiple_objects", 82), ("appearance_style", 90)]
)
def test_suite_sizes_and_aux(dimension, size):
    suite = prompt_suites.load_suite(dimension)
    assert len(suite) == size
    assert len({e.prompt for e in suite}) == size
    needs_aux = prompt_suites.AUX_KEY[dimension] is not None
    assert all((e.aux is not None) == needs_aux for e in suite)


def test_suite_contents():
    scene = prompt_suites.load_suite("scene")
    assert scene[0].prompt == "alley" and scene[0].aux == "alley"
    objs = prompt_suites.load_suite("multiple_objects")
    assert objs[0].prompt == "a bird and a cat" and objs[0].aux == "bird and cat"
    assert all(len(e.aux.split(" and ")) == 2 for e in objs)
    styles = prompt_suites.load_suite("appearance_style")
    assert len({e.aux for e in styles}) == 9 and all(e.prompt.endswith(e.aux) for e in styles)
    assert prompt_suites.load_suite("dynamic_degree")[0].prompt == "a person swimming in ocean"
    with pytest.raises(ValueError):
        prompt_suites.load_suite("subject_consistency")


def test_package_data_is_declared_with_notice():
    here = os.path.dirname(prompt_suites.__file__)
    assert os.path.isfile(os.path.join(here, "data", "NOTICE"))
    assert "Apache" in open(os.path.join(here, "data", "NOTICE")).read()
    setup_py = open(os.path.join(here, "..", "..", "..", "setup.py")).read()
    assert "cogvideox_jax.eval.vbench" in setup_py and "data/*.json" in setup_py


def test_unique_prompts_dedupes_across_dimensions():
    prompts = prompt_suites.unique_prompts()
    assert len(prompts) == len(set(prompts))
    assert len(prompts) <= 100 + 86 + 72 + 82 + 90


def test_discovery_finds_files_and_warns_about_missing(tmp_path, caplog):
    entries = prompt_suites.load_suite("scene")[:2]
    (tmp_path / "alley-0.mp4").write_bytes(b"x")
    (tmp_path / "alley-1.partial.mp4").write_bytes(b"x")  # half-written: not counted
    (tmp_path / "amusement park-1.mp4").write_bytes(b"x")
    with caplog.at_level(logging.WARNING):
        found = discovery.discover(str(tmp_path), entries, videos_per_prompt=2)
    assert [os.path.basename(p) for p in found[0].video_paths] == ["alley-0.mp4"]
    assert found[0].missing == ("alley-1.mp4",)
    assert found[1].missing == ("amusement park-0.mp4",)
    assert discovery.num_videos(found) == 2
    assert discovery.missing_names(found) == ["alley-1.mp4", "amusement park-0.mp4"]
    assert "alley-1.mp4" in caplog.text and "Missing benchmark videos" in caplog.text


def test_generation_plan_resumes_and_renames_atomically(tmp_path):
    prompts = ["alley", "a bird and a cat", "alley"]
    jobs = generation_plan.plan_generation(prompts, 3, str(tmp_path))
    assert [(j.prompt, j.index) for j in jobs] == [("alley", 0), ("alley", 1), ("alley", 2)] + [
        ("a bird and a cat", i) for i in range(3)
    ]
    assert os.path.basename(jobs[0].path) == "alley-0.mp4"
    assert jobs[0].tmp_path.endswith(".mp4") and jobs[0].tmp_path != jobs[0].path
    # job 0 finished, job 1 half-written (only its temporary exists), an empty final file for job 2
    open(jobs[0].tmp_path, "wb").write(b"video")
    generation_plan.finish(jobs[0])
    open(jobs[1].tmp_path, "wb").write(b"partial")
    open(jobs[2].path, "wb").close()
    remaining = generation_plan.plan_generation(prompts, 3, str(tmp_path))
    assert [(j.prompt, j.index) for j in remaining][:2] == [("alley", 1), ("alley", 2)]
    assert len(remaining) == 5
    assert os.path.exists(jobs[0].path) and not os.path.exists(jobs[0].tmp_path)
    found = discovery.discover(str(tmp_path), [prompt_suites.PromptEntry("scene", "alley", "alley")], 3)
    assert [os.path.basename(p) for p in found[0].video_paths] == ["alley-0.mp4", "alley-2.mp4"]
    with pytest.raises(FileNotFoundError):
        generation_plan.finish(remaining[2])


def test_file_names_reject_path_separators():
    with pytest.raises(ValueError):
        discovery.video_file_name("a/b", 0)


def test_vbench_full_info_entries_have_vbench_nesting():
    entries = [discovery.PromptVideos(prompt_suites.PromptEntry("scene", "bar", "bar"), ("v/bar-0.mp4",), ())]
    (e,) = vbench_adapter.full_info_entries("scene", entries)
    # vbench.utils.load_dimension_info takes ['auxiliary_info']['scene'], scene() then ['scene'], check_generate ['scene']
    assert e["auxiliary_info"]["scene"]["scene"]["scene"] == "bar"
    assert e["video_list"] == ["v/bar-0.mp4"] and e["dimension"] == ["scene"]
    json.dumps(e)
    objs = vbench_adapter.full_info_entries(
        "multiple_objects", [discovery.PromptVideos(prompt_suites.PromptEntry("multiple_objects", "x", "bird and cat"), (), ())]
    )
    assert objs[0]["auxiliary_info"] == {"multiple_objects": {"object": "bird and cat"}}
    assert vbench_adapter.submodules("dynamic_degree", "w.pth") == {"model": "w.pth"}


def test_vbench_adapter_calls_compute_with_full_info(tmp_path, monkeypatch):
    """The adapter hands VBench a full-info JSON that VBench's own load_dimension_info can read."""
    import sys
    import types

    torch = pytest.importorskip("torch")
    calls = {}

    def load_dimension_info(json_dir, dimension, lang):  # verbatim logic of vbench.utils
        video_list, prompt_dict_ls = [], []
        for prompt_dict in json.load(open(json_dir)):
            if dimension in prompt_dict["dimension"] and "video_list" in prompt_dict:
                cur = prompt_dict["video_list"] if isinstance(prompt_dict["video_list"], list) else [prompt_dict["video_list"]]
                video_list += cur
                if "auxiliary_info" in prompt_dict and dimension in prompt_dict["auxiliary_info"]:
                    prompt_dict_ls += [{"prompt": prompt_dict[f"prompt_{lang}"], "video_list": cur,
                                        "auxiliary_info": prompt_dict["auxiliary_info"][dimension]}]
        return video_list, prompt_dict_ls

    def compute_scene(json_dir, device, submodules):
        _, infos = load_dimension_info(json_dir, "scene", "en")
        calls.update(device=device, submodules=submodules, scenes=[i["auxiliary_info"]["scene"]["scene"] for i in infos])
        return 0.25, [{"video_path": p} for i in infos for p in i["video_list"]]

    fake = types.ModuleType("vbench.scene")
    fake.compute_scene = compute_scene
    fake.torch = torch  # every vbench dimension module does ``import torch``
    monkeypatch.setitem(sys.modules, "vbench", types.ModuleType("vbench"))
    monkeypatch.setitem(sys.modules, "vbench.scene", fake)
    entries = prompt_suites.load_suite("scene")[:2]
    found = [discovery.PromptVideos(e, (f"v/{e.prompt}-0.mp4",), ()) for e in entries]
    dim = vbench_adapter.VBenchDimension("scene", str(tmp_path / "tag2text_swin_14m.pth"), device="cpu")
    score, per_video = dim.evaluate(found)
    assert score == 0.25 and len(per_video) == 2
    assert calls["scenes"] == ["alley", "amusement park"] and calls["device"] == torch.device("cpu")
    assert calls["submodules"]["vit"] == "swin_b" and calls["submodules"]["image_size"] == 384
