"""Write a synthetic shapes text–video dataset in the CogVideoX fine-tuning folder format.

Layout of ``out/``::

    dataset.json                 # generator settings, vocabulary, held-out combinations, counts
    metadata.jsonl               # every clip: video (relative to out/), caption, attributes, split
    train/   prompts.txt videos.txt metadata.jsonl videos/00000.mp4 ...   (a data_root for training)
    heldout/ prompts.txt videos.txt metadata.jsonl videos/00000.mp4 ...   (held-out prompts + reference clips;
                                                                            absent when num_heldout == 0)

Paths in each split's prompts/videos/metadata files are relative to that split folder. The held-out
split uses (color, shape, direction) combinations that never occur in ``train/``; every single value
of each attribute still occurs in training. Everything is a deterministic function of ``seed`` and the
settings (the mp4s are encoded single-threaded, so files are byte-identical too).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
from dataclasses import asdict, dataclass

import numpy as np

from cogvideox_jax.shapes.dataset.captions import make_caption
from cogvideox_jax.shapes.dataset.render import render_clip, sample_clip_spec
from cogvideox_jax.shapes.dataset.vocabulary import BACKGROUNDS, COLORS, DIRECTIONS, SHAPES, SIZES
from cogvideox_jax.data.video_io import write_video

SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class ShapesConfig:
    num_train: int = 1000
    num_heldout: int = 100
    num_frames: int = 17
    height: int = 64
    width: int = 64
    fps: float = 8.0
    seed: int = 0
    heldout_fraction: float = 0.12   # of the (color, shape, direction) combinations
    antialias: bool = True
    crf: int = 12
    colors: tuple[str, ...] = tuple(COLORS)
    shapes: tuple[str, ...] = SHAPES
    directions: tuple[str, ...] = DIRECTIONS
    backgrounds: tuple[str, ...] = tuple(BACKGROUNDS)


def split_combinations(cfg: ShapesConfig) -> tuple[list[tuple], list[tuple]]:
    """(train, heldout) lists of (color, shape, direction) triples; disjoint, deterministic in ``seed``.

    Held-out triples are drawn greedily so that no color, shape or direction loses all its training
    combinations.
    """
    combos = list(itertools.product(cfg.colors, cfg.shapes, cfg.directions))
    rng = np.random.default_rng([cfg.seed, 7919])
    order = rng.permutation(len(combos))
    n_held = int(round(cfg.heldout_fraction * len(combos))) if cfg.num_heldout > 0 else 0
    held: set[tuple] = set()
    for i in order:
        if len(held) >= n_held:
            break
        c = combos[i]
        remaining = [t for t in combos if t not in held and t != c]
        if all(any(t[k] == c[k] for t in remaining) for k in range(3)):
            held.add(c)
    return [c for c in combos if c not in held], [c for c in combos if c in held]


def clip_record(cfg: ShapesConfig, split: str, index: int, combos: list[tuple]) -> tuple[dict, np.ndarray]:
    """Metadata record (without paths) and uint8 frames of clip ``index`` of ``split``."""
    rng = np.random.default_rng([cfg.seed, SPLITS.index(split), index])
    color, shape, direction = combos[int(rng.integers(len(combos)))]
    attrs = {"color": color, "shape": shape, "direction": direction,
             "size": SIZES[int(rng.integers(len(SIZES)))],
             "background": cfg.backgrounds[int(rng.integers(len(cfg.backgrounds)))]}
    spec = sample_clip_spec(attrs, rng, cfg.num_frames, cfg.height, cfg.width)
    caption = make_caption(attrs, rng)
    record = {"caption": caption, **attrs, "radius": round(spec.radius, 3),
              "start": [round(v, 3) for v in spec.start], "end": [round(v, 3) for v in spec.end]}
    return record, render_clip(spec, antialias=cfg.antialias)


def make_dataset(out: str, cfg: ShapesConfig = ShapesConfig(), verbose: bool = False) -> dict:
    """Render and write the dataset into ``out`` (created); returns the ``dataset.json`` summary."""
    os.makedirs(out, exist_ok=True)
    train_combos, held_combos = split_combinations(cfg)
    counts = {"train": cfg.num_train, "heldout": cfg.num_heldout if held_combos else 0}
    all_records = []
    for split in SPLITS:
        combos = train_combos if split == "train" else held_combos
        if counts[split] == 0:
            continue
        root = os.path.join(out, split)
        os.makedirs(os.path.join(root, "videos"), exist_ok=True)
        records = []
        for i in range(counts[split]):
            rec, frames = clip_record(cfg, split, i, combos)
            rel = f"videos/{i:05d}.mp4"
            write_video(os.path.join(root, rel), frames, fps=cfg.fps, crf=cfg.crf)
            records.append({"video": rel, **rec, "split": split})
            if verbose and (i + 1) % 100 == 0:
                print(f"{split}: {i + 1}/{counts[split]}", flush=True)
        with open(os.path.join(root, "prompts.txt"), "w", encoding="utf-8") as f:
            f.writelines(r["caption"] + "\n" for r in records)
        with open(os.path.join(root, "videos.txt"), "w", encoding="utf-8") as f:
            f.writelines(r["video"] + "\n" for r in records)
        with open(os.path.join(root, "metadata.jsonl"), "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
        all_records += [{**r, "video": f"{split}/{r['video']}"} for r in records]
    with open(os.path.join(out, "metadata.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in all_records)
    summary = {"config": asdict(cfg), "counts": counts,
               "train_combinations": [list(c) for c in train_combos],
               "heldout_combinations": [list(c) for c in held_combos],
               "colors": {k: COLORS[k] for k in cfg.colors},
               "backgrounds": {k: BACKGROUNDS[k] for k in cfg.backgrounds}}
    with open(os.path.join(out, "dataset.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    return summary


def build_parser() -> argparse.ArgumentParser:
    d = ShapesConfig()
    p = argparse.ArgumentParser(prog="cogvideox-jax make-dataset shapes",
                                description="Write the synthetic shapes text-video dataset (train/ + heldout/).")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--num-train", type=int, default=d.num_train)
    p.add_argument("--num-heldout", type=int, default=d.num_heldout)
    p.add_argument("--num-frames", type=int, default=d.num_frames, help="frames per clip (e.g. 9, 13 or 17)")
    p.add_argument("--height", type=int, default=d.height)
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--fps", type=float, default=d.fps)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--heldout-fraction", type=float, default=d.heldout_fraction,
                   help="fraction of (color, shape, direction) combinations reserved for heldout/")
    p.add_argument("--crf", type=int, default=d.crf, help="x264 CRF (lower = more faithful colors)")
    p.add_argument("--no-antialias", action="store_true")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    cfg = ShapesConfig(num_train=args.num_train, num_heldout=args.num_heldout, num_frames=args.num_frames,
                       height=args.height, width=args.width, fps=args.fps, seed=args.seed,
                       heldout_fraction=args.heldout_fraction, antialias=not args.no_antialias, crf=args.crf)
    summary = make_dataset(args.out, cfg, verbose=not args.quiet)
    if not args.quiet:
        print(f"wrote {summary['counts']} clips to {args.out} "
              f"({len(summary['heldout_combinations'])} held-out combinations)")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
