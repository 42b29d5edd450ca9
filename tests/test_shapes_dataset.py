"""Shapes dataset generator: vocabulary contrast, caption parser round trip, rendering, mp4 round trip,
folder format, determinism and held-out split disjointness."""
from __future__ import annotations

import itertools
import json
import os

import numpy as np
import pytest

from cogvideox_jax.data.folder_dataset import read_folder
from cogvideox_jax.shapes.dataset.captions import MOTION_PHRASES, TEMPLATES, make_caption, parse_caption, render_caption
from cogvideox_jax.shapes.dataset.make_dataset import ShapesConfig, main, make_dataset, split_combinations
from cogvideox_jax.shapes.dataset.render import coverage, render_clip, sample_clip_spec
from cogvideox_jax.shapes.dataset.vocabulary import BACKGROUNDS, COLORS, DIRECTIONS, SHAPES, SIZES
from cogvideox_jax.data.video_io import read_video, read_video_uint8, write_video
from cogvideox_jax.shapes.eval.color_masks import srgb_to_lab

LUMA = np.array([0.299, 0.587, 0.114])


def test_vocabulary_is_separable():
    assert len(SHAPES) >= 4 and len(COLORS) >= 6 and set(DIRECTIONS) == {"left", "right", "up", "down", "still"}
    assert not set(BACKGROUNDS) & set(COLORS), "background names must not be object color words"
    lab = {k: srgb_to_lab(v) for k, v in COLORS.items()}
    for a, b in itertools.combinations(COLORS, 2):
        assert np.linalg.norm(lab[a] - lab[b]) > 30, (a, b)
    for c, b in itertools.product(COLORS, BACKGROUNDS):
        assert np.linalg.norm(srgb_to_lab(COLORS[c]) - srgb_to_lab(BACKGROUNDS[b])) > 40, (c, b)
        # edges must live in (full-resolution) luma, not only in yuv420p's half-resolution chroma
        assert abs(LUMA @ (np.array(COLORS[c]) - np.array(BACKGROUNDS[b]))) >= 40, (c, b)


def test_caption_parser_round_trips_every_template_and_phrasing():
    n = 0
    values = list(itertools.product(COLORS, SHAPES, BACKGROUNDS, SIZES))
    for t, d in itertools.product(range(len(TEMPLATES)), DIRECTIONS):
        for p, with_size in itertools.product(range(len(MOTION_PHRASES[d])), (False, True)):
            color, shape, bg, size = values[n % len(values)]
            n += 1
            attrs = {"color": color, "shape": shape, "direction": d, "size": size, "background": bg}
            cap = render_caption(attrs, t, p, with_size)
            got = parse_caption(cap)
            assert (got["color"], got["shape"], got["direction"]) == (color, shape, d), cap
            assert got["size"] == (size if with_size else None), cap
            if "{bg}" in TEMPLATES[t]:
                assert got["background"] == bg, cap
    # every value combination under a template that names everything
    for color, shape, bg, size in values:
        cap = render_caption({"color": color, "shape": shape, "direction": "up", "size": size, "background": bg},
                             2, 0, True)
        assert parse_caption(cap) == {"color": color, "shape": shape, "direction": "up", "size": size,
                                      "background": bg}, cap
    assert parse_caption("a tiny magenta disc sitting motionless")["color"] == "purple"
    assert parse_caption("a big orange plus sign falling")["direction"] == "down"
    assert parse_caption("a cat")["color"] is None


def test_captions_vary():
    rng = np.random.default_rng(0)
    attrs = {"color": "red", "shape": "circle", "direction": "left", "size": "small", "background": "gray"}
    caps = {make_caption(attrs, rng) for _ in range(60)}
    assert len(caps) >= 15


@pytest.mark.parametrize("side", [64, 32])
def test_render_moves_and_stays_inside(side):
    # the largest objects, moving the farthest, fit smaller frames too (radius and margin scale)
    rng = np.random.default_rng(3)
    for d in DIRECTIONS:
        attrs = {"color": "yellow", "shape": "star", "direction": d, "size": "large", "background": "navy"}
        spec = sample_clip_spec(attrs, rng, num_frames=9, height=side, width=side)
        frames = render_clip(spec)
        assert frames.shape == (9, side, side, 3) and frames.dtype == np.uint8
        bg = np.array(BACKGROUNDS["navy"])
        fg = np.abs(frames.astype(int) - bg).sum(-1) > 30
        assert fg.any(axis=(1, 2)).all()
        assert not fg[:, 0].any() and not fg[:, -1].any() and not fg[:, :, 0].any() and not fg[:, :, -1].any()
        cx = [np.nonzero(f)[1].mean() for f in fg]
        cy = [np.nonzero(f)[0].mean() for f in fg]
        dx, dy = cx[-1] - cx[0], cy[-1] - cy[0]
        expect = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0)}[d]
        step = 5 * side / 64
        assert np.sign(round(dx / step)) == expect[0] and np.sign(round(dy / step)) == expect[1], (d, dx, dy)


def test_coverage_area_matches_geometry():
    a = coverage("circle", 32.0, 32.0, 10.0, 64, 64, supersample=8).sum()
    assert abs(a - np.pi * 100) < 3
    a = coverage("square", 32.3, 31.7, 10.0, 64, 64, supersample=8).sum()
    assert abs(a - (17.0 ** 2)) < 3


def test_video_io_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    spec = sample_clip_spec({"color": "green", "shape": "square", "direction": "right", "size": "large",
                             "background": "black"}, rng, 17)
    frames = render_clip(spec)
    path = write_video(tmp_path / "v.mp4", frames, fps=8)
    back = read_video(path)
    assert back.shape == (17, 64, 64, 3) and back.dtype == np.float32
    assert np.abs(back * 255 - frames).mean() < 3.0
    # float input in [-1, 1]
    write_video(tmp_path / "f.mp4", frames / 127.5 - 1.0, value_range=(-1.0, 1.0))
    assert np.abs(read_video_uint8(tmp_path / "f.mp4").astype(int) - frames).mean() < 3.0


def _files(root):
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = open(p, "rb").read()
    return out


def test_dataset_folder_format_determinism_and_split(tmp_path):
    cfg = ShapesConfig(num_train=6, num_heldout=3, num_frames=9, seed=5)
    make_dataset(str(tmp_path / "a"), cfg)
    assert main(["--out", str(tmp_path / "b"), "--num-train", "6", "--num-heldout", "3", "--num-frames", "9",
                 "--seed", "5", "--quiet"]) == 0
    fa, fb = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert sorted(fa) == sorted(fb) and all(fa[k] == fb[k] for k in fa), "same seed must give identical files"
    make_dataset(str(tmp_path / "c"), ShapesConfig(num_train=6, num_heldout=3, num_frames=9, seed=6))
    assert fa["train/prompts.txt"] != _files(tmp_path / "c")["train/prompts.txt"]

    for split, n in (("train", 6), ("heldout", 3)):
        recs = read_folder(str(tmp_path / "a" / split))     # the training pipeline's own reader
        assert len(recs) == n and all(r.video.endswith(".mp4") for r in recs)
        assert read_video_uint8(recs[0].video).shape == (9, 64, 64, 3)
        meta = [json.loads(x) for x in open(tmp_path / "a" / split / "metadata.jsonl")]
        assert [m["caption"] for m in meta] == [r.prompt for r in recs]
        assert all(m["split"] == split for m in meta)
    top = [json.loads(x) for x in open(tmp_path / "a" / "metadata.jsonl")]
    assert len(top) == 9 and all(os.path.isfile(tmp_path / "a" / m["video"]) for m in top)


def test_heldout_combinations_are_disjoint_and_cover_vocabulary(tmp_path):
    cfg = ShapesConfig(seed=1)
    train, held = split_combinations(cfg)
    assert held and not set(train) & set(held)
    assert len(train) + len(held) == len(COLORS) * len(SHAPES) * len(DIRECTIONS)
    for k, values in enumerate((COLORS, SHAPES, DIRECTIONS)):
        assert {c[k] for c in train} == set(values)
    summary = make_dataset(str(tmp_path), ShapesConfig(num_train=12, num_heldout=6, num_frames=9, seed=1))
    meta = [json.loads(x) for x in open(tmp_path / "metadata.jsonl")]
    combo = lambda m: (m["color"], m["shape"], m["direction"])  # noqa: E731
    tr = {combo(m) for m in meta if m["split"] == "train"}
    he = {combo(m) for m in meta if m["split"] == "heldout"}
    assert he and not tr & he
    assert he <= {tuple(c) for c in summary["heldout_combinations"]}
    assert not {m["caption"] for m in meta if m["split"] == "train"} & {m["caption"] for m in meta
                                                                          if m["split"] == "heldout"}
    # captions agree with the structured attributes
    for m in meta:
        p = parse_caption(m["caption"])
        assert (p["color"], p["shape"], p["direction"]) == combo(m)


@pytest.mark.parametrize("frames", [9, 13])
def test_other_clip_lengths(frames):
    spec = sample_clip_spec({"color": "cyan", "shape": "cross", "direction": "down", "size": "small",
                             "background": "brown"}, np.random.default_rng(0), frames)
    assert render_clip(spec, antialias=False).shape == (frames, 64, 64, 3)
