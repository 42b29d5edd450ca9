"""Classical-vision prompt-adherence evaluation of shapes clips: is the object of the caption's color and
shape, and does it move in the caption's direction, consistently over time?

``evaluate_video(video, target)`` scores one clip (``target``: a caption string or a dict with any of
color/shape/direction/size); ``evaluate_folder(root)`` scores a dataset / samples folder;
``main(argv)`` is the ``cogvideox-jax eval shapes`` command.
"""
from __future__ import annotations

import argparse
import json
import os
from collections import Counter

import numpy as np

from cogvideox_jax.shapes.dataset.captions import parse_caption
from cogvideox_jax.shapes.dataset.render import shape_polygon
from cogvideox_jax.shapes.dataset.vocabulary import SHAPES, SIZE_RADIUS_64
from cogvideox_jax.shapes.eval.color_masks import (as_float255, estimate_background, foreground_masks,
                                                   frame_colors, name_color, object_alpha)
from cogvideox_jax.shapes.eval.psnr import psnr
from cogvideox_jax.shapes.eval.report import ATTRIBUTES, aggregate, format_report
from cogvideox_jax.shapes.eval.shape_moments import classify_shape
from cogvideox_jax.shapes.eval.shape_templates import classify_by_template
from cogvideox_jax.shapes.eval.tracks import centroid_track, motion_direction, net_displacement, temporal_consistency


def size_threshold_64() -> float:
    """Half the largest bounding-box side separating "small" from "large" objects at 64 px: midway
    between the largest small object's (its radius: circles and diamonds) and the smallest large
    object's (the narrowest shape at the smallest large radius), from the renderer's own geometry."""
    def half_extent(shape: str) -> float:
        poly = shape_polygon(shape, 1.0)
        return 1.0 if poly is None else float(np.ptp(poly, axis=0).max() / 2)

    widest = max(half_extent(s) for s in SHAPES)
    narrowest = min(half_extent(s) for s in SHAPES)
    return (SIZE_RADIUS_64["small"][1] * widest + SIZE_RADIUS_64["large"][0] * narrowest) / 2


SIZE_THRESHOLD_64 = size_threshold_64()


def _majority(labels) -> str | None:
    vals = [v for v in labels if v is not None]
    return Counter(vals).most_common(1)[0][0] if vals else None


def analyze_video(video, value_range: tuple[float, float] | None = None, still_fraction: float = 0.1,
                  shape_method: str = "template") -> dict:
    """Predicted color/shape/direction/size of the (single) object in ``video`` plus temporal statistics.

    ``video``: ``(T, H, W, 3)`` uint8, or float in [0, 1] (``value_range`` for other float ranges).
    ``shape_method``: "template" (soft-coverage template matching, default) or "moments" (binary-mask
    moment features, nearest rendered prototype).
    """
    v = as_float255(video, value_range)
    t_len, h, w, _ = v.shape
    bg = estimate_background(v)
    masks = foreground_masks(v, bg)
    track = centroid_track(masks)
    det = ~np.isnan(track[:, 0])
    masks[~det] = False
    rgb = frame_colors(v, masks)
    colors = [None if c is None else name_color(c) for c in rgb]
    core = [c for c in rgb if c is not None]
    obj_rgb = np.median(np.stack(core), axis=0) if core else None
    color = name_color(obj_rgb) if core else None
    if shape_method == "template":
        shapes = [classify_by_template(object_alpha(f, bg, obj_rgb, m)) if d else None
                  for f, m, d in zip(v, masks, det)]
    elif shape_method == "moments":
        shapes = [classify_shape(m) if d else None for m, d in zip(masks, det)]
    else:
        raise ValueError(f"shape_method must be 'template' or 'moments', got {shape_method!r}")
    half_sides = []
    for m, d in zip(masks, det):
        if d:
            ys, xs = np.nonzero(m)
            half_sides.append(max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) / 2.0)
    size = None
    if half_sides:
        size = "large" if np.median(half_sides) >= SIZE_THRESHOLD_64 * min(h, w) / 64.0 else "small"
    return {
        "pred": {"color": color, "shape": _majority(shapes), "direction": motion_direction(track, h, w, still_fraction),
                 "size": size},
        "temporal": temporal_consistency(masks, track, colors, shapes),
        "displacement": [round(float(x), 3) for x in net_displacement(track)],
        "background_rgb": [round(float(x), 1) for x in bg],
    }


def evaluate_video(video, target, value_range: tuple[float, float] | None = None, still_fraction: float = 0.1,
                   shape_method: str = "template") -> dict:
    """``analyze_video`` plus ``target`` (dict or caption, parsed with ``parse_caption``) and per-attribute
    ``correct`` flags (``None`` for attributes the target does not name) and ``temporal_consistency``."""
    if isinstance(target, str):
        target = parse_caption(target)
    target = {a: target.get(a) for a in ATTRIBUTES}
    rec = analyze_video(video, value_range, still_fraction, shape_method)
    rec["target"] = target
    rec["correct"] = {a: (None if target[a] is None else rec["pred"][a] == target[a]) for a in ATTRIBUTES}
    rec["temporal_consistency"] = rec["temporal"]["score"]
    return rec


def evaluate_arrays(videos, targets, value_range: tuple[float, float] | None = None,
                    still_fraction: float = 0.1, shape_method: str = "template") -> tuple[list[dict], dict]:
    """Score in-memory videos (e.g. pipeline samples: ``value_range=(-1, 1)``) against captions or
    attribute dicts; returns (per-video records, ``aggregate`` summary)."""
    records = [{"index": i, "caption": t if isinstance(t, str) else "",
                **evaluate_video(v, t, value_range, still_fraction, shape_method)}
               for i, (v, t) in enumerate(zip(videos, targets))]
    return records, aggregate(records)


def read_targets(root: str) -> list[tuple[str, dict, str]]:
    """(absolute video path, target attributes, caption) for each video of a folder.

    Uses ``metadata.jsonl`` with structured attributes when present (as written by
    ``make-dataset shapes``), else prompts.txt/videos.txt (or a caption-only metadata.jsonl) with the
    attributes parsed from the captions.
    """
    meta = os.path.join(root, "metadata.jsonl")
    if os.path.isfile(meta):
        with open(meta, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        if rows and all("color" in r and "shape" in r and "direction" in r for r in rows):
            return [(os.path.join(root, r["video"]), {a: r.get(a) for a in ATTRIBUTES}, r.get("caption", ""))
                    for r in rows]
    from cogvideox_jax.data.folder_dataset import read_folder

    return [(r.video, parse_caption(r.prompt), r.prompt) for r in read_folder(root)]


def evaluate_folder(root: str, reference_root: str | None = None, limit: int | None = None,
                    still_fraction: float = 0.1, shape_method: str = "template") -> tuple[list[dict], dict]:
    """Per-video records and the aggregate summary for every video of ``root`` (first ``limit``).

    With ``reference_root``, each record also gets ``psnr`` (data range 1) against the video at the
    same relative path under ``reference_root`` (e.g. VAE reconstructions vs originals).
    """
    from cogvideox_jax.data.video_io import read_video_uint8

    root = os.path.abspath(root)
    records = []
    for path, target, caption in read_targets(root)[:limit]:
        video = read_video_uint8(path)
        rec = {"video": os.path.relpath(path, root), "caption": caption,
               **evaluate_video(video, target, still_fraction=still_fraction, shape_method=shape_method)}
        if reference_root is not None:
            ref = read_video_uint8(os.path.join(reference_root, rec["video"]))
            n = min(len(ref), len(video))
            rec["psnr"] = psnr(video[:n].astype(np.float32) / 255, ref[:n].astype(np.float32) / 255, 1.0)
        records.append(rec)
    return records, aggregate(records)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cogvideox-jax eval shapes",
                                description="Classical-vision prompt adherence (color, shape, direction, "
                                            "temporal consistency) of shapes videos.")
    p.add_argument("--data-root", required=True,
                   help="folder with metadata.jsonl (structured attributes) or prompts.txt + videos.txt "
                        "(attributes parsed from the captions), e.g. generated samples or a dataset split")
    p.add_argument("--reference-root", default=None,
                   help="also report PSNR against the same relative paths under this folder")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N videos")
    p.add_argument("--still-fraction", type=float, default=0.1,
                   help="net displacement below this fraction of the frame side counts as 'still'")
    p.add_argument("--shape-method", choices=("template", "moments"), default="template",
                   help="template: match the soft coverage against the rendered shapes (default); "
                        "moments: nearest rendered prototype in (extent, solidity, Hu1, centroid offset)")
    p.add_argument("--records", default=None, help="write per-video records (JSON lines) here")
    p.add_argument("--out", default=None, help="write the summary JSON here")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    records, summary = evaluate_folder(args.data_root, args.reference_root, args.limit, args.still_fraction,
                                       args.shape_method)
    if args.records:
        with open(args.records, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1)
    print(format_report(summary))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
