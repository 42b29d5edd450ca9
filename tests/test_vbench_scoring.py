"""Golden tests of the VBench scoring rules (numbers derived from vbench 0.1.5's code)."""
import numpy as np
import pytest

from cogvideox_jax.eval.vbench import aggregation, appearance_style, dynamic_degree, human_action
from cogvideox_jax.eval.vbench import multiple_objects, scene
from cogvideox_jax.eval.vbench.frame_sampling import (
    dynamic_degree_frame_indices,
    dynamic_degree_interval,
    middle_frame_indices,
)
from cogvideox_jax.eval.vbench.prompt_suites import load_kinetics400_categories


# ---- frame sampling ---------------------------------------------------------------------------
def test_middle_indices_49_frames():
    assert middle_frame_indices(16, 49) == [1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31, 34, 37, 40, 43, 46]


def test_middle_indices_81_frames_and_short_video_padding():
    idx = middle_frame_indices(16, 81)  # edges 0,5,10,15,20,25,30,35,40,45,50,55,60,65,70,75,81
    assert idx == [2, 7, 12, 17, 22, 27, 32, 37, 42, 47, 52, 57, 62, 67, 72, 77]
    assert middle_frame_indices(16, 5) == [0, 1, 2, 3, 4] + [4] * 11
    with pytest.raises(ValueError):
        middle_frame_indices(16, 0)


# ---- dynamic degree ---------------------------------------------------------------------------
def test_dynamic_params_cogvideox_720x480_49_frames_8fps():
    idx = dynamic_degree_frame_indices(49, 8.0)
    assert idx == list(range(49))
    assert dynamic_degree.dynamic_params(480, 720, len(idx)) == (11.25, 12)  # round(12.25) = 12


def test_dynamic_params_1360x768_81_frames_16fps():
    idx = dynamic_degree_frame_indices(81, 16.0)
    assert dynamic_degree_interval(16.0) == 2 and len(idx) == 41 and idx[-1] == 80
    assert dynamic_degree.dynamic_params(768, 1360, len(idx)) == (18.0, 10)  # round(10.25) = 10


@pytest.mark.parametrize("n_frames,count", [(2, 0), (6, 2), (10, 2), (14, 4), (18, 4), (22, 6), (49, 12), (50, 12)])
def test_count_rounds_half_to_even(n_frames, count):
    # 4 * n / 16 = 0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 12.25, 12.5: Python's round, not round-half-up
    assert dynamic_degree.dynamic_params(480, 720, n_frames)[1] == count


@pytest.mark.parametrize("fps,interval", [(4, 1), (8, 1), (12, 2), (16, 2), (20, 2), (24, 3), (28, 4), (30, 4)])
def test_fps_interval_rounds_half_to_even(fps, interval):
    assert dynamic_degree_interval(fps) == interval  # round(0.5)=0 -> max(1, .), round(2.5)=2, round(3.5)=4


def test_top_flow_magnitude_takes_mean_of_top_five_percent():
    flow = np.zeros((10, 20, 2), np.float32)  # 200 px -> top int(10.0) = 10 px
    flow.reshape(-1, 2)[:10] = (3.0, 4.0)  # magnitude 5
    flow.reshape(-1, 2)[10:12] = (0.0, 1.0)  # magnitude 1, just outside the top 10
    assert dynamic_degree.top_flow_magnitude(flow) == pytest.approx(5.0)
    flow.reshape(-1, 2)[0] = (0.0, 15.0)  # one larger value replaces one 5 in the top 10
    assert dynamic_degree.top_flow_magnitude(flow) == pytest.approx((15 + 9 * 5) / 10)


def test_is_dynamic_needs_count_scores_strictly_above_threshold():
    thres, count = 11.25, 3
    assert dynamic_degree.is_dynamic([12, 0, 12, 0, 12], thres, count)
    assert not dynamic_degree.is_dynamic([12, 12, 11.25, 0], thres, count)  # equal is not above
    assert dynamic_degree.is_dynamic([], 1.0, 0) is False  # VBench's loop never runs


def test_pad_to_multiple_of_8_matches_raft_input_padder():
    frame = np.arange(5 * 11 * 3, dtype=np.uint8).reshape(5, 11, 3)
    padded = dynamic_degree.pad_to_multiple_of_8(frame)
    assert padded.shape == (8, 16, 3)
    # sintel mode: pad_h = 3 -> (1, 2); pad_w = 5 -> (2, 3); replicate
    np.testing.assert_array_equal(padded[1:6, 2:13], frame)
    np.testing.assert_array_equal(padded[0, 2:13], frame[0])
    np.testing.assert_array_equal(padded[7, 2:13], frame[-1])
    assert dynamic_degree.pad_to_multiple_of_8(np.zeros((480, 720, 3))).shape == (480, 720, 3)


# ---- human action -----------------------------------------------------------------------------
def test_action_label_parsing_from_file_name():
    f = human_action.action_label_from_path
    assert f("/videos/A person is riding a bike-0.mp4") == "riding a bike"
    assert f("A person is playing ice hockey-4.mp4") == "playing ice hockey"
    assert f("out/a Person is tai chi_extra-1.mp4") == "tai chi"


def _probs(pairs, n=400, base=0.01):
    p = np.full(n, base, np.float32)
    for i, v in pairs:
        p[i] = v
    return p


def test_action_rule_rounds_to_four_decimals_before_threshold():
    cats = load_kinetics400_categories()
    assert cats[0] == "riding a bike"
    assert human_action.is_action_correct(_probs([(0, 0.84996)]), "riding a bike", cats)  # round -> 0.85
    assert not human_action.is_action_correct(_probs([(0, 0.84994)]), "riding a bike", cats)  # -> 0.8499
    assert not human_action.is_action_correct(_probs([(0, 0.99)]), "marching", cats)


def test_action_rule_only_looks_at_top5():
    cats = load_kinetics400_categories()
    probs = _probs([(i, 0.99) for i in range(1, 6)] + [(0, 0.95)])  # label class ranked 6th
    assert not human_action.is_action_correct(probs, "riding a bike", cats)
    probs = _probs([(i, 0.99) for i in range(1, 5)] + [(0, 0.95)])  # ranked 5th, above 0.85
    assert human_action.is_action_correct(probs, "riding a bike", cats)
    assert human_action.kept_categories(probs, cats)[-1] == "riding a bike"


def test_every_human_action_prompt_has_a_kinetics_label():
    from cogvideox_jax.eval.vbench.prompt_suites import load_suite

    cats = set(load_kinetics400_categories())
    labels = [human_action.action_label_from_path(f"{e.prompt}-0.mp4") for e in load_suite("human_action")]
    assert len(labels) == 100 and all(label in cats for label in labels)


# ---- scene ------------------------------------------------------------------------------------
def test_scene_is_a_substring_rule():
    assert scene.scene_frame_success("bar", "a red barn in a field")  # "bar" in "barn"
    assert not scene.scene_frame_success("bar", "a pub counter")


def test_scene_multiword_needs_every_word():
    s = "train station platform"
    assert scene.scene_frame_success(s, "a train waiting at a station platform")
    assert not scene.scene_frame_success(s, "a train at a platform")
    assert scene.count_scene_successes("indoor library", ["an indoor library", "a library", "indoor"]) == 1


# ---- multiple objects -------------------------------------------------------------------------
def test_multiple_objects_set_membership():
    assert multiple_objects.parse_object_pair("bird and cat") == ("bird", "cat")
    assert multiple_objects.frame_success("bird and cat", {"cat", "bird", "dog"})
    assert not multiple_objects.frame_success("bird and cat", {"bird", "cats"})  # exact names, not substrings
    assert multiple_objects.frame_success("sports ball and snowboard", {"snowboard", "sports ball"})
    with pytest.raises(ValueError):
        multiple_objects.parse_object_pair("bird and cat and dog")


def test_grit_resize_shape():
    assert multiple_objects.grit_resize_shape(480, 720) is None
    assert multiple_objects.grit_resize_shape(768, 1360) is None  # only when min > 768
    assert multiple_objects.grit_resize_shape(1080, 1920) == (720, 1280)


# ---- appearance style + aggregation -----------------------------------------------------------
def test_clip_frame_similarity_is_scaled_cosine():
    img = np.array([[3.0, 4.0], [0.0, -2.0]])
    txt = np.array([1.0, 0.0])
    np.testing.assert_allclose(appearance_style.clip_frame_similarities(img, txt, 100.0), [0.6, 0.0], atol=1e-12)


def test_pooled_frames_differ_from_mean_of_videos():
    long = appearance_style.score_video("a-0.mp4", [0.30] * 49)
    short = appearance_style.score_video("a-1.mp4", [0.10] * 13)
    pooled = aggregation.aggregate("appearance_style", [long, short])
    assert pooled == pytest.approx((49 * 0.30 + 13 * 0.10) / 62)
    assert pooled != pytest.approx(np.mean([long["video_results"], short["video_results"]]))
    counts = [
        {"success_frame_count": 16, "frame_count": 16, "video_results": 1.0},
        {"success_frame_count": 0, "frame_count": 8, "video_results": 0.0},
    ]
    assert aggregation.aggregate("scene", counts) == pytest.approx(16 / 24)  # not 0.5


def test_video_level_aggregation():
    vr = [{"video_results": True}, {"video_results": False}, {"video_results": np.bool_(True)}, {"video_results": 0}]
    assert aggregation.aggregate("dynamic_degree", vr) == 0.5
    assert aggregation.aggregate("human_action", vr[:3]) == pytest.approx(2 / 3)
